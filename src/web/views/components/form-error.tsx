import type { FC } from 'hono/jsx';
import { MarkedText } from './marked-text.tsx';

/**
 * The reason a form's submit was rejected, shown on the page next to the form. `id` lets the
 * invalid field point to it with `aria-describedby`. The reason may name a file of the pull
 * request, so invisible characters show as marks.
 */
export const FormError: FC<{ message: string; id?: string }> = ({ message, id }) => (
  <p class="error" role="alert" id={id}>
    <MarkedText text={message} />
  </p>
);
