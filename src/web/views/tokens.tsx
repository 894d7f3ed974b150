import type { FC } from 'hono/jsx';
import { maxTokenNameLength, type listApiTokens } from '../../users/api-tokens.ts';
import type { ActiveSession } from '../session/session-store.ts';
import { CsrfField } from './components/csrf-field.tsx';
import { DangerButtonForm } from './components/danger-button-form.tsx';
import { FormError } from './components/form-error.tsx';
import { MarkedText } from './components/marked-text.tsx';
import { Time } from './components/time.tsx';
import { Layout } from './layout.tsx';

type TokenRow = Awaited<ReturnType<typeof listApiTokens>>[number];

/**
 * Personal access tokens: the list, a form to create one, and the new token shown once. `form`
 * is a rejected submit: the name as typed, the error shown next to the form, and whether the
 * name itself is invalid (not so when the user has too many tokens).
 */
export const TokensPage: FC<{
  session: ActiveSession;
  tokens: TokenRow[];
  created?: { name: string; token: string };
  form?: { name: string; error: string; nameInvalid: boolean };
}> = ({ session, tokens, created, form }) => (
  <Layout title="Tokens" session={session}>
    <h1>Personal access tokens</h1>
    <p class="muted">
      Tokens authenticate calls to the JSON API: send <code>Authorization: Bearer TOKEN</code>.
    </p>
    {created ? (
      <section class="card notice" role="status">
        <h2>
          Token "<MarkedText text={created.name} />" created
        </h2>
        <p>Copy it now. It is shown only once, and only its hash is stored.</p>
        <pre class="new-token">
          <code>{created.token}</code>
        </pre>
      </section>
    ) : null}

    <section class="card">
      <h2>Create a token</h2>
      {form ? <FormError message={form.error} id="token-name-error" /> : null}
      <form method="post" action="/tokens">
        <CsrfField session={session} />
        <label>
          Name{' '}
          {/* Browsers count maxlength in UTF-16 code units and a character takes at most 2, so
              every valid name fits. The server checks the limit in characters. */}
          <input
            name="name"
            required
            maxlength={2 * maxTokenNameLength}
            placeholder="for example: CI script"
            value={form?.name}
            aria-invalid={form?.nameInvalid ? 'true' : undefined}
            aria-describedby={form ? 'token-name-error' : undefined}
          />
        </label>{' '}
        <button type="submit" class="primary">
          Create token
        </button>
      </form>
    </section>

    <section class="card">
      <h2>Your tokens</h2>
      {tokens.length === 0 ? (
        <p class="muted">No tokens yet.</p>
      ) : (
        <table class="tokens">
          <thead>
            <tr>
              <th>Name</th>
              <th>Token</th>
              <th>Created</th>
              <th>Last used</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((token) => (
              <tr>
                <td>
                  <MarkedText text={token.name} />
                </td>
                <td>
                  <code>{`fxw_…${token.lastFour}`}</code>
                </td>
                <td>
                  <Time date={token.createdAt} />
                </td>
                <td>
                  <Time date={token.lastUsedAt} />
                </td>
                <td>
                  <DangerButtonForm session={session} action={`/tokens/${token.id}/revoke`} label="Revoke" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  </Layout>
);
