import type { FC } from 'hono/jsx';
import { MarkedText } from './components/marked-text.tsx';
import { Layout } from './layout.tsx';

interface ErrorProps {
  status: number;
  message: string;
  requestId: string | undefined;
}

/** Error shown inside a page region that htmx swapped. */
export const ErrorFragment: FC<ErrorProps> = ({ status, message, requestId }) => (
  <div class="error" role="alert">
    <strong>{`Error ${status}: `}</strong>
    <MarkedText text={message} />
    {requestId ? <span class="muted">{` (request id ${requestId})`}</span> : null}
  </div>
);

export const ErrorPage: FC<ErrorProps> = (props) => (
  <Layout title={`Error ${props.status}`}>
    <h1>Something went wrong</h1>
    <ErrorFragment {...props} />
    <p>
      <a href="/">Back to the dashboard</a>
    </p>
  </Layout>
);

/** Renders the error as a full page, or as a fragment for htmx to swap in. */
export function renderError(props: ErrorProps, fragment: boolean) {
  return fragment ? <ErrorFragment {...props} /> : <ErrorPage {...props} />;
}
