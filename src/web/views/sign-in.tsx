import type { FC } from 'hono/jsx';
import { Layout } from './layout.tsx';

/** The sign-in page; without an OAuth client configured it lists the variables to set. */
export const SignInPage: FC<{ configured: boolean; next: string; notice?: string }> = ({
  configured,
  next,
  notice,
}) => (
  <Layout title="Sign in">
    <section class="sign-in card">
      <h1>Sign in to Fixwright</h1>
      {notice ? <p class="notice">{notice}</p> : null}
      <p>Fixwright reports problems in pull requests and previews fixes written by a model.</p>
      {configured ? (
        <a class="button primary" href={`/auth/github?next=${encodeURIComponent(next)}`}>
          Sign in with GitHub
        </a>
      ) : (
        <p class="error" role="alert">
          Sign-in is not configured: set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET to the GitHub
          App's OAuth client id and secret, then restart Fixwright.
        </p>
      )}
    </section>
  </Layout>
);
