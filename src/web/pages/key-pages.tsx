import { KeyringUnavailableError } from '../../keys/master-keys.ts';
import { Hono } from 'hono';
import type { AppContext } from '../../context.ts';
import { providers, type Provider } from '../../db/schema/index.ts';
import { deleteUserKey, listUserKeys, saveUserKey } from '../../keys/user-keys.ts';
import { AppError, notFound } from '../errors.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import { KeysPage, providerNames } from '../views/keys.tsx';

const maxKeyLength = 500;

// A Map, because an object literal would also return inherited members such as `constructor`.
const notices = new Map([
  ['saved', 'Key saved.'],
  ['deleted', 'Key deleted.'],
]);

function isProvider(value: string): value is Provider {
  return (providers as readonly string[]).includes(value);
}

/** `GET /keys`, `POST /keys` (add or replace) and `POST /keys/:provider/delete`. */
export function keyPages(context: AppContext): Hono<{ Variables: PageVariables }> {
  const app = new Hono<{ Variables: PageVariables }>();
  app.use('/keys', requirePageSession(context));
  app.use('/keys/*', requirePageSession(context));

  app.get('/keys', async (c) => {
    const keys = await listUserKeys(context, c.var.user.id);
    const notice = notices.get(c.req.query('notice') ?? '');
    const saveUnavailable = context.keyring.unavailableReason;
    return c.html(
      <KeysPage session={c.var.session} keys={keys} notice={notice} saveUnavailable={saveUnavailable} />,
    );
  });

  app.post('/keys', async (c) => {
    const body = await c.req.parseBody();
    const provider = typeof body.provider === 'string' ? body.provider : '';
    const key = typeof body.key === 'string' ? body.key.trim() : '';
    if (!isProvider(provider)) {
      throw new AppError('bad_request', `Invalid provider ${JSON.stringify(provider)}: use groq or gemini.`);
    }
    if (key === '' || key.length > maxKeyLength) {
      throw new AppError('bad_request', `Invalid key: paste the ${providerNames[provider]} API key, at most ${maxKeyLength} characters.`);
    }

    let result;
    try {
      result = await saveUserKey(context, { userId: c.var.user.id, provider, key });
    } catch (error) {
      if (!(error instanceof KeyringUnavailableError)) throw error;
      // The keys page, with the message, so the user still sees and can delete the stored keys.
      const keys = await listUserKeys(context, c.var.user.id);
      return c.html(
        <KeysPage session={c.var.session} keys={keys} error={error.message} saveUnavailable={error.message} />,
        503,
      );
    }
    if (!result.ok) {
      context.logger.info(
        { event: 'user_key.rejected', requestId: c.get('requestId'), userId: c.var.user.id, provider },
        'own key not saved',
      );
      const keys = await listUserKeys(context, c.var.user.id);
      if (result.cause === 'rate_limited') {
        c.header('Retry-After', String(result.retryAfterSeconds));
        return c.html(<KeysPage session={c.var.session} keys={keys} error={result.reason} />, 429);
      }
      const status = result.cause === 'unavailable' ? 502 : 400;
      return c.html(<KeysPage session={c.var.session} keys={keys} error={result.reason} />, status);
    }
    context.logger.info(
      { event: 'user_key.saved', requestId: c.get('requestId'), userId: c.var.user.id, provider },
      'own key saved',
    );
    return c.redirect('/keys?notice=saved', 303);
  });

  app.post('/keys/:provider/delete', async (c) => {
    const provider = c.req.param('provider');
    const deleted =
      isProvider(provider) && (await deleteUserKey(context.db, { userId: c.var.user.id, provider }));
    if (!deleted) throw notFound('Key', provider);
    context.logger.info(
      { event: 'user_key.deleted', requestId: c.get('requestId'), userId: c.var.user.id, provider },
      'own key deleted',
    );
    return c.redirect('/keys?notice=deleted', 303);
  });

  return app;
}
