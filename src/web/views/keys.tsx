import type { FC } from 'hono/jsx';
import { providers, type KeySource, type Provider } from '../../db/schema/index.ts';
import { phraseForKeysPage } from '../../keys/own-keys.ts';
import {
  describePlatformKeyRejection,
  operatorMustReplace,
  type PlatformKeyRejection,
} from '../../keys/platform-key-rejections.ts';
import type { listUserKeys } from '../../keys/user-keys.ts';
import type { ActiveSession } from '../session/session-store.ts';
import { CsrfField } from './components/csrf-field.tsx';
import { DangerButtonForm } from './components/danger-button-form.tsx';
import { FormError } from './components/form-error.tsx';
import { Time } from './components/time.tsx';
import { Layout } from './layout.tsx';

type KeyRow = Awaited<ReturnType<typeof listUserKeys>>[number];

/** A provider in the user's order, and which key a preview would call it with. */
export interface ProviderUse {
  provider: Provider;
  /** The key that pays for the provider's calls, or null when previews leave it out. */
  keySource: KeySource | null;
  /** True when the user's stored key of the provider is unusable. */
  ownKeyUnusable: boolean;
  /** True when the operator configured a platform key for the provider. */
  hasPlatformKey: boolean;
  /** The provider's rejection of the configured platform key, or null when none is recorded. */
  platformKeyRejection: PlatformKeyRejection | null;
}

/**
 * Describes which key a preview calls a provider with, or why it leaves the provider out.
 * `later` are the providers after it in the user's order.
 */
function describeUse(use: ProviderUse, later: ProviderUse[]): string {
  if (use.keySource === 'user') return 'your own key';
  if (use.keySource === 'platform' && use.platformKeyRejection) {
    // A skipped platform key passes the request on only to the user's own key (see generateOwnKeysLast).
    const own = later.find((next) => next.keySource === 'user');
    const working = later.find((next) => next.keySource === 'platform' && !next.platformKeyRejection);
    let instead = 'files are not previewed, unless you save a key of your own';
    if (own) instead = `previews use your own ${providerNames[own.provider]} key instead`;
    else if (working) instead += ` or put ${providerNames[working.provider]} first`;
    return (
      `${describePlatformKeyRejection(use.provider, use.platformKeyRejection.status)}. ` +
      `${operatorMustReplace(use.provider)} Until then, ${instead}.`
    );
  }
  if (use.keySource === 'platform') return 'the platform key, charged to your allowance';
  // The stored key's row gives the reason and the next step: save the key again, or for a key
  // that another master key encrypted, wait for the operator to restore that master key.
  if (use.ownKeyUnusable) return 'left out: your stored key cannot be used now (the reason is under "Stored keys" above)';
  if (!use.hasPlatformKey) return 'left out: you have no key for it, and the platform has none';
  return 'left out: previews use your own key of an earlier provider instead of the platform key';
}

export const providerNames: Record<(typeof providers)[number], string> = {
  groq: 'Groq',
  gemini: 'Gemini',
};

/**
 * The user's own provider keys: list, add or replace, delete. Keys are never shown again.
 * `saveUnavailable` is why no key can be saved now (the keyring's unavailableReason). The form
 * is then disabled and shows it, unless `error` is the same message.
 */
export const KeysPage: FC<{
  session: ActiveSession;
  keys: KeyRow[];
  notice?: string;
  error?: string;
  /** The user's providers in the order previews try them. */
  uses: ProviderUse[];
  saveUnavailable?: string | null;
  /** The provider selected in the form, kept after a rejected save. */
  selectedProvider?: Provider;
}> = ({ session, keys, notice, error, uses, saveUnavailable, selectedProvider }) => (
  <Layout title="Keys" session={session}>
    <h1>Your own model keys</h1>
    <p class="muted">
      Fix previews try the providers in the order below, each with your own key when you stored
      one and with the platform key otherwise. After a rate limit, an outage or a timeout, the
      next provider in the list gets the request. After the provider rejects a key, yours or the
      platform's, the next provider gets it only when it is called with your own key, never the
      platform key, and the file says which key was rejected and which was used. A platform key
      that the provider rejected gets no requests but a periodic re-check until the operator
      replaces it, and the list below says so. Each call reads
      your key as stored when it starts, so a key you replace or delete during a preview is
      replaced or no longer used from the next call on. Calls on your own key do not count
      against your plan's allowance. Keys are stored encrypted and shown only by their last four
      characters.
    </p>
    {notice ? <p class="notice" role="status">{notice}</p> : null}
    {error ? <FormError message={error} /> : null}

    <section class="card">
      <h2>Stored keys</h2>
      {keys.length === 0 ? (
        <p class="muted">No keys stored.</p>
      ) : (
        <table class="keys">
          <thead>
            <tr>
              <th>Provider</th>
              <th>Key</th>
              <th>Added</th>
              <th>Updated</th>
              <th>Last used</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {keys.map((key) => (
              <tr data-provider={key.provider}>
                <td>
                  {providerNames[key.provider]}
                  {key.unusableReason ? <p class="error">{phraseForKeysPage(key.unusableReason)}</p> : null}
                </td>
                <td>
                  <code>{`…${key.lastFour}`}</code>
                </td>
                <td>
                  <Time date={key.createdAt} />
                </td>
                <td>
                  <Time date={key.updatedAt} />
                </td>
                <td>
                  <Time date={key.lastUsedAt} />
                </td>
                <td>
                  <DangerButtonForm session={session} action={`/keys/${key.provider}/delete`} label="Delete" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>

    <section class="card provider-order">
      <h2>Provider order</h2>
      <ol>
        {uses.map((use, index) => (
          <li data-provider={use.provider}>
            {providerNames[use.provider]}: <span class="muted">{describeUse(use, uses.slice(index + 1))}</span>
          </li>
        ))}
      </ol>
      <form method="post" action="/keys/order">
        <CsrfField session={session} />
        <label>
          Try first{' '}
          <select name="first">
            {providers.map((provider) => (
              <option value={provider} selected={uses[0]?.provider === provider}>
                {providerNames[provider]}
              </option>
            ))}
          </select>
        </label>{' '}
        <button type="submit">Save order</button>
      </form>
    </section>

    <section class="card">
      <h2>Add or replace a key</h2>
      {saveUnavailable && saveUnavailable !== error ? <p class="error">{saveUnavailable}</p> : null}
      <form method="post" action="/keys">
        <CsrfField session={session} />
        <fieldset class="key-fields" disabled={Boolean(saveUnavailable)}>
        <label>
          Provider{' '}
          <select name="provider">
            {providers.map((provider) => (
              <option value={provider} selected={provider === selectedProvider}>
                {providerNames[provider]}
              </option>
            ))}
          </select>
        </label>{' '}
        <label>
          Key <input type="password" name="key" required autocomplete="off" maxlength={500} />
        </label>{' '}
        <button type="submit" class="primary">
          Save key
        </button>
        </fieldset>
      </form>
    </section>
  </Layout>
);
