import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../../context.ts';
import type { Provider } from '../../db/schema/index.ts';
import { KeyringUnavailableError } from '../../keys/master-keys.ts';
import { describeUnknownProvider, parseProvider, parseProviderOrder } from '../../keys/provider-order.ts';
import {
  deleteUserKey,
  getProviderOrder,
  listUserKeys,
  saveUserKey,
  setProviderOrder,
  type StoredKeyInfo,
} from '../../keys/user-keys.ts';
import type { AuthVariables } from '../auth.ts';
import { AppError } from '../errors.ts';
import { parseInput } from '../validation.ts';

const saveKeyExample = '{"key": "..."}';
const saveBody = z.object({ key: z.string().describe('the provider key as a string') });
const orderBody = z.object({ order: z.unknown().optional() });

function serialize(info: StoredKeyInfo) {
  return {
    provider: info.provider,
    lastFour: info.lastFour,
    createdAt: info.createdAt.toISOString(),
    updatedAt: info.updatedAt.toISOString(),
    lastUsedAt: info.lastUsedAt?.toISOString() ?? null,
    unusableReason: info.unusableReason,
  };
}

function providerParam(value: string): Provider {
  const provider = parseProvider(value);
  if (!provider) throw new AppError('bad_request', describeUnknownProvider(value));
  return provider;
}

/** Reads a JSON body without quoting it in the error, since it may carry a key. */
async function readJson(request: { json(): Promise<unknown> }, example: string): Promise<unknown> {
  try {
    return await request.json();
  } catch {
    throw new AppError('bad_request', `Request body must be JSON like ${example}.`);
  }
}

/**
 * Builds the routes for the caller's own provider keys and provider order: `GET /api/user/keys`,
 * `PUT|DELETE /api/user/keys/:provider` and `PUT /api/user/provider-order`.
 */
export function keyRoutes(context: AppContext): Hono<{ Variables: AuthVariables }> {
  const app = new Hono<{ Variables: AuthVariables }>();
  const { db, logger } = context;

  app.get('/api/user/keys', async (c) => {
    const userId = c.var.user.id;
    const [keys, providerOrder] = await Promise.all([
      listUserKeys(context, userId),
      getProviderOrder(db, userId),
    ]);
    return c.json({
      keys: keys.map(serialize),
      providerOrder,
      storageAvailable: context.keyring.unavailableReason === null,
    });
  });

  app.put('/api/user/keys/:provider', async (c) => {
    const provider = providerParam(c.req.param('provider'));
    const input = await readJson(c.req, saveKeyExample);
    const body = parseInput(saveBody, input, 'body', saveKeyExample, { secret: true });

    let saved;
    try {
      const logger = context.logger.child({ requestId: c.get('requestId') });
      saved = await saveUserKey({ ...context, logger }, { userId: c.var.user.id, provider, key: body.key });
    } catch (error) {
      if (error instanceof KeyringUnavailableError) throw new AppError('not_configured', error.message);
      throw error;
    }
    if (!saved.ok && saved.cause === 'rate_limited') {
      c.header('Retry-After', String(saved.retryAfterSeconds));
      throw new AppError('rate_limited', saved.reason);
    }
    if (!saved.ok && saved.cause === 'unavailable') {
      // A provider that failed or timed out during the check is an upstream failure, not bad input.
      throw new AppError('bad_gateway', saved.reason);
    }
    if (!saved.ok) throw new AppError('bad_request', saved.reason, { fields: ['key'] });
    // A new row gets created_at = updated_at from the same now(); a replaced one keeps its created_at.
    return c.json({ key: serialize(saved.info) }, saved.replaced ? 200 : 201);
  });

  app.delete('/api/user/keys/:provider', async (c) => {
    const provider = providerParam(c.req.param('provider'));
    const userId = c.var.user.id;
    if (!(await deleteUserKey(db, { userId, provider }))) {
      throw new AppError('not_found', `No ${provider} key is stored for you.`);
    }
    logger.info({ event: 'user_key.deleted', userId, provider }, 'provider key deleted');
    return c.body(null, 204);
  });

  app.put('/api/user/provider-order', async (c) => {
    const orderExample = '{"order": ["gemini", "groq"]}';
    const body = parseInput(orderBody, await readJson(c.req, orderExample), 'body', orderExample);
    const order = parseProviderOrder(body.order);
    if (!order.ok) throw new AppError('bad_request', order.reason, { fields: ['order'] });

    const userId = c.var.user.id;
    await setProviderOrder(db, { userId, order: order.order });
    logger.info({ event: 'user.provider_order_set', userId, order: order.order }, 'provider order set');
    return c.json({ providerOrder: order.order });
  });

  return app;
}
