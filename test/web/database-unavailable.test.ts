import { createServer, type AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../../src/db/client.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { healthRoutes, healthWarningIntervalMs } from '../../src/web/health.ts';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import { createSignedInUser, formBody, formHeaders, type SignedInUser } from '../helpers/web.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const password = 'db-password-in-url';
const webhookSecret = 'webhook-secret-while-down';

let context: TestContext;
let unreachable: DatabaseHandle;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;
let apiToken: string;

/** Returns a port of 127.0.0.1 that nothing listens on, as while PostgreSQL restarts. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: webhookSecret });
  user = await createSignedInUser(context.db, { login: 'while-down' });
  ({ token: apiToken } = await mintApiToken(context.db, user.userId, 'while down'));
  unreachable = connectDatabase(`postgres://fixwright:${password}@127.0.0.1:${await closedPort()}/fixwright`);
  app = createApp({ ...context, db: unreachable.db });
});
afterAll(async () => {
  await unreachable?.close();
  await context?.close();
});

describe('requests while the database is unreachable', () => {
  it('answers a page with 503', async () => {
    const response = await app.request('/', { headers: { cookie: user.cookie } });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    const html = await response.text();
    expect(html).toContain('The database is not reachable; try again in a few seconds.');
    expect(html).not.toContain(password);
    // The page shows the request id once, after the message.
    const requestId = response.headers.get('x-request-id')!;
    expect(html.split(requestId)).toHaveLength(2);
    expect(html).toContain(`(request id ${requestId})`);
  });

  it('answers a form post with 503', async () => {
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken, name: 'during the outage' }),
    });
    expect(response.status).toBe(503);
  });

  it('answers the API with 503 JSON', async () => {
    const response = await app.request('/api/user/usage', {
      headers: { authorization: `Bearer ${apiToken}` },
    });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    const body = await response.json();
    expect(body.error.code).toBe('service_unavailable');
    expect(body.error.message).toBe('The database is not reachable; try again in a few seconds.');
    expect(body.error.requestId).toBe(response.headers.get('x-request-id'));
    expect(JSON.stringify(body)).not.toContain(password);
  });

  it('answers a signed webhook with 503', async () => {
    // Recording a delivery opens a transaction, whose connection error drizzle does not wrap.
    const response = await postSignedWebhook(app, {
      secret: webhookSecret,
      event: 'installation',
      deliveryId: 'delivery-while-down',
      payload: examplePayload('installation', 'created', 4242),
    });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
  });

  it('answers 503 on a closed connection pool', async () => {
    // postgres.js raises CONNECTION_ENDED, one of its own codes, for a pool that was ended.
    const ended = connectDatabase(context.database.url);
    await ended.close();
    const response = await createApp({ ...context, db: ended.db }).request('/', {
      headers: { cookie: user.cookie },
    });
    expect(response.status).toBe(503);
  });

  it('logs warnings, not unhandled errors', () => {
    const warnings = logsOf(context, 'http.database_unavailable');
    expect(warnings.length).toBe(5);
    expect(warnings[0]!.level).toBe(40);
    expect((warnings[0]!.err as { code: string }).code).toBe('ECONNREFUSED');
    expect((warnings[3]!.err as { code: string }).code).toBe('ECONNREFUSED');
    expect((warnings[4]!.err as { code: string }).code).toBe('CONNECTION_ENDED');
    expect(logsOf(context, 'http.unhandled_error')).toEqual([]);
    expect(JSON.stringify(context.logs)).not.toContain(password);
  });
});

describe('/healthz while the database is unreachable', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('rate-limits its warnings', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const healthContext = { ...context, db: unreachable.db };
    const health = healthRoutes(healthContext);
    const check = async (status: number) => {
      const response = await health.request('/healthz');
      expect(response.status).toBe(status);
    };

    await check(503);
    await check(503);
    await check(503);
    expect(logsOf(context, 'health.database_unreachable')).toHaveLength(1);
    expect(logsOf(context, 'health.database_unreachable')[0]!.level).toBe(40);
    expect(logsOf(context, 'health.database_unreachable')[0]!.suppressedErrors).toBe(0);

    vi.setSystemTime(Date.now() + healthWarningIntervalMs);
    await check(503);
    expect(logsOf(context, 'health.database_unreachable')).toHaveLength(2);
    expect(logsOf(context, 'health.database_unreachable')[1]!.suppressedErrors).toBe(2);

    await check(503);
    healthContext.db = context.db;
    await check(200);
    await check(200);
    const recovered = logsOf(context, 'health.database_reachable');
    expect(recovered).toHaveLength(1);
    expect(recovered[0]!.level).toBe(30);
    expect(recovered[0]!.suppressedErrors).toBe(1);
    expect(logsOf(context, 'health.database_unreachable')).toHaveLength(2);
  });
});
