import { KeyringUnavailableError } from '../../keys/master-keys.ts';
import { Hono } from 'hono';
import type { AppContext } from '../../context.ts';
import { providers, type Provider } from '../../db/schema/index.ts';
import { listPlatformKeyRejections } from '../../keys/platform-key-rejections.ts';
import { describeUnknownProvider, parseProvider } from '../../keys/provider-order.ts';
import {
  deleteUserKey,
  getProviderOrder,
  listUserKeys,
  saveUserKey,
  setProviderOrder,
} from '../../keys/user-keys.ts';
import { countCharacters } from '../../text/character-count.ts';
import { joinWithOr } from '../../text/plural.ts';
import { quoteValue } from '../../text/quote-value.ts';
import { FormFieldError, readOptionalTextField } from '../session/form-body.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import type { Context } from 'hono';
import { chooseKeys } from '../../autofix/model-clients.ts';
import { platformKey } from '../../autofix/provider-client.ts';
import { KeysPage, providerNames, type ProviderUse } from '../views/keys.tsx';

const maxKeyLength = 500;

// A Map, because an object literal would also return inherited members such as `constructor`.
const notices = new Map<string, string>([
  ['saved', 'Key saved.'],
  ['deleted', 'Key deleted.'],
  ['order-saved', 'Provider order saved.'],
]);
// A second press of "Delete", or a delete from a page opened before the key was deleted, finds
// no key. That is no error, so the page shows a notice instead of an error.
for (const provider of providers) {
  notices.set(`already-deleted-${provider}`, `Your ${providerNames[provider]} key was already deleted.`);
}

function isProvider(value: string): value is Provider {
  return (providers as readonly string[]).includes(value);
}

/** The providers as the form's choices name them: "Groq or Gemini". */
const providerChoice = joinWithOr(providers.map((provider) => providerNames[provider]));

/** A form field that names a provider, and the button that submits its form. */
interface ProviderField {
  name: string;
  /** The label of the field on the keys page, when it differs from "Provider". */
  label?: string;
  button: string;
}

const orderField: ProviderField = { name: 'first', label: 'Try first', button: 'Save order' };
const keyProviderField: ProviderField = { name: 'provider', button: 'Save key' };

/** Builds the next step that a message about a provider field ends with. */
function providerRetry(field: ProviderField): string {
  return `choose ${providerChoice} and press "${field.button}" again.`;
}

/**
 * Describes a form field that does not name a provider. The page's form always sends one, so a
 * missing or empty field comes from another client, and its message names the field's values.
 */
function describeProviderField(field: ProviderField, value: string | undefined): string {
  const next = providerRetry(field);
  if (value === undefined || value === '') {
    const label = field.label ? `, the provider under "${field.label}"` : '';
    const values = joinWithOr(providers.map((provider) => `${field.name}=${provider}`));
    return `Missing field "${field.name}"${label}: send ${values}, or ${next}`;
  }
  const label = field.label ? ` under "${field.label}"` : '';
  return `Invalid provider ${quoteValue(value, 40)}${label}: ${next}`;
}

/**
 * Returns why the key field, trimmed of spaces, cannot be a key and what to do, or null when
 * saveUserKey should check it. The message never quotes the key.
 */
function describeInvalidKeyField(provider: Provider, key: string): string | null {
  const name = providerNames[provider];
  if (key === '') {
    return `Invalid key: the field is empty or only spaces. Paste your ${name} API key and press "Save key" again.`;
  }
  const length = countCharacters(key);
  if (length > maxKeyLength) {
    return (
      `Invalid key: it has ${length} characters, more than the ${maxKeyLength} this form ` +
      `accepts. Paste your ${name} API key alone and press "Save key" again.`
    );
  }
  return null;
}

/**
 * `GET /keys`, `POST /keys` (add or replace), `POST /keys/:provider/delete` and
 * `POST /keys/order` (which provider previews try first).
 */
export function keyPages(context: AppContext): Hono<{ Variables: PageVariables }> {
  const app = new Hono<{ Variables: PageVariables }>();
  app.use('/keys', requirePageSession(context));
  app.use('/keys/*', requirePageSession(context));

  /**
   * Renders the keys page with the user's keys and provider order as they are stored now.
   * `selectedProvider` keeps the provider of a rejected save selected in the form.
   */
  async function renderKeysPage(
    c: Context<{ Variables: PageVariables }>,
    message: { notice?: string; error?: string; saveUnavailable?: string; selectedProvider?: Provider } = {},
    status: 200 | 400 | 429 | 502 | 503 = 200,
  ) {
    const userId = c.var.user.id;
    const keys = await listUserKeys(context, userId);
    const order = await getProviderOrder(context.db, userId);
    const usable = new Map(keys.map((key) => [key.provider, key.unusableReason === null]));
    const choices = chooseKeys(order, usable, (provider) => Boolean(platformKey(context.config, provider)));
    const rejections = await listPlatformKeyRejections(context.db, context.config);
    const uses: ProviderUse[] = order.map((provider) => ({
      provider,
      keySource: choices.find((choice) => choice.provider === provider)?.keySource ?? null,
      ownKeyUnusable: usable.get(provider) === false,
      hasPlatformKey: Boolean(platformKey(context.config, provider)),
      platformKeyRejection: rejections.find((rejection) => rejection.provider === provider) ?? null,
    }));
    return c.html(
      <KeysPage
        session={c.var.session}
        keys={keys}
        uses={uses}
        saveUnavailable={context.keyring.unavailableReason}
        {...message}
      />,
      status,
    );
  }

  app.get('/keys', (c) => renderKeysPage(c, { notice: notices.get(c.req.query('notice') ?? '') }));

  app.post('/keys/order', async (c) => {
    const form = await c.req.parseBody({ all: true });
    let sent: string | undefined;
    try {
      sent = readOptionalTextField(form, orderField.name, providerRetry(orderField));
    } catch (error) {
      if (!(error instanceof FormFieldError)) throw error;
      return renderKeysPage(c, { error: error.message }, 400);
    }
    const first = parseProvider(sent);
    if (!first) return renderKeysPage(c, { error: describeProviderField(orderField, sent) }, 400);
    const order = [first, ...providers.filter((provider) => provider !== first)];
    await setProviderOrder(context.db, { userId: c.var.user.id, order });
    context.logger.info(
      { event: 'user.provider_order_saved', requestId: c.get('requestId'), userId: c.var.user.id, order },
      'provider order saved',
    );
    return c.redirect('/keys?notice=order-saved', 303);
  });

  app.post('/keys', async (c) => {
    const form = await c.req.parseBody({ all: true });
    const logRejected = (provider: Provider) =>
      context.logger.info(
        { event: 'user_key.rejected', requestId: c.get('requestId'), userId: c.var.user.id, provider },
        'own key not saved',
      );
    // A rejected save shows the page again with the provider kept, but never the key, which is
    // a secret that the page must not carry back.
    let sentProvider: string | undefined;
    try {
      sentProvider = readOptionalTextField(form, keyProviderField.name, providerRetry(keyProviderField));
    } catch (error) {
      if (!(error instanceof FormFieldError)) throw error;
      return renderKeysPage(c, { error: error.message }, 400);
    }
    if (sentProvider === undefined || !isProvider(sentProvider)) {
      return renderKeysPage(c, { error: describeProviderField(keyProviderField, sentProvider) }, 400);
    }
    const provider = sentProvider;
    let key: string;
    try {
      const keyRetry = `paste your ${providerNames[provider]} API key into the form and press "Save key" again.`;
      key = (readOptionalTextField(form, 'key', keyRetry) ?? '').trim();
    } catch (error) {
      if (!(error instanceof FormFieldError)) throw error;
      logRejected(provider);
      return renderKeysPage(c, { error: error.message, selectedProvider: provider }, 400);
    }
    const invalidKey = describeInvalidKeyField(provider, key);
    if (invalidKey) {
      logRejected(provider);
      return renderKeysPage(c, { error: invalidKey, selectedProvider: provider }, 400);
    }

    let result;
    try {
      // saveUserKey logs user_key.saved, with the request id from this logger.
      const logger = context.logger.child({ requestId: c.get('requestId') });
      result = await saveUserKey({ ...context, logger }, { userId: c.var.user.id, provider, key });
    } catch (error) {
      if (!(error instanceof KeyringUnavailableError)) throw error;
      // The keys page, with the message, so the user still sees and can delete the stored keys.
      return renderKeysPage(c, { error: error.message, saveUnavailable: error.message, selectedProvider: provider }, 503);
    }
    if (!result.ok) {
      logRejected(provider);
      const message = { error: result.reason, selectedProvider: provider };
      if (result.cause === 'rate_limited') {
        c.header('Retry-After', String(result.retryAfterSeconds));
        return renderKeysPage(c, message, 429);
      }
      return renderKeysPage(c, message, result.cause === 'unavailable' ? 502 : 400);
    }
    return c.redirect('/keys?notice=saved', 303);
  });

  app.post('/keys/:provider/delete', async (c) => {
    const provider = c.req.param('provider');
    if (!isProvider(provider)) return renderKeysPage(c, { error: describeUnknownProvider(provider) }, 400);
    if (!(await deleteUserKey(context.db, { userId: c.var.user.id, provider }))) {
      return c.redirect(`/keys?notice=already-deleted-${provider}`, 303);
    }
    context.logger.info(
      { event: 'user_key.deleted', requestId: c.get('requestId'), userId: c.var.user.id, provider },
      'own key deleted',
    );
    return c.redirect('/keys?notice=deleted', 303);
  });

  return app;
}
