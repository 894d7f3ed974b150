import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { platformKeyRejections, userApiKeys } from '../../src/db/schema/index.ts';
import { encryptUserKey } from '../../src/keys/encryption.ts';
import { hashPlatformKey, recordPlatformKeyRejection } from '../../src/keys/platform-key-rejections.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser } from '../helpers/web.ts';

const platformGroqKey = 'gsk_dashboardRejectedPlatformKey0123456';
const platformGeminiKey = 'AIzaDashboardWorkingPlatformKey01234567';

let context: TestContext;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  context = await createTestContext({ GROQ_API_KEY: platformGroqKey, PLATFORM_KEY_RECHECK_SECONDS: '300' });
  app = createApp(context);
});
afterAll(async () => {
  await context?.close();
});
beforeEach(async () => {
  await context.db.delete(platformKeyRejections);
});

const rejectGroqKey = () =>
  recordPlatformKeyRejection(context.db, { provider: 'groq', keyHash: hashPlatformKey(platformGroqKey) }, 401, 300);

async function pageOf(user: { cookie: string }, path: string, application = app): Promise<string> {
  const response = await application.request(path, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return response.text();
}

/** Returns each provider of the keys page's order list with its description. */
async function providerUses(user: { cookie: string }, application = app): Promise<string[][]> {
  const html = await pageOf(user, '/keys', application);
  return [...html.matchAll(/<li data-provider="(\w+)">[^<]*<span class="muted">([^<]*)<\/span>/g)].map((match) => [
    match[1]!,
    match[2]!,
  ]);
}

const groqRejected =
  'Groq rejected the platform Groq key that this service provides (HTTP 401). The operator of ' +
  'this service has to replace the platform Groq key. Until then, ';

describe('rejected platform key on the dashboard', () => {
  it('tells a user without keys', async () => {
    const user = await createSignedInUser(context.db, { login: 'platform-rejection-user' });
    await rejectGroqKey();

    expect(await providerUses(user)).toEqual([
      ['groq', `${groqRejected}files are not previewed, unless you save a key of your own.`],
      ['gemini', 'left out: you have no key for it, and the platform has none'],
    ]);
    const home = await pageOf(user, '/');
    expect(home).toContain('<h2>Platform key rejected</h2>');
    expect(home).toContain(
      '<p data-provider="groq">Groq rejected the platform Groq key that this service provides ' +
        '(HTTP 401). The operator of this service has to replace the platform Groq key. Until ' +
        'then, previews do not use it. The keys page shows which key your previews use instead.</p>',
    );
    expect(home).not.toContain('GROQ_API_KEY');
    expect(home).not.toContain(platformGroqKey);
  });

  it('names the own key that takes over', async () => {
    const user = await createSignedInUser(context.db, { login: 'platform-rejection-own' });
    const key = 'AIzaOwnKeyOfDashboardUser0123456789abcd';
    const encrypted = await encryptUserKey(context.keyring, { userId: user.userId, provider: 'gemini' }, key);
    await context.db.insert(userApiKeys).values({ userId: user.userId, provider: 'gemini', ...encrypted, lastFour: 'abcd' });
    await rejectGroqKey();

    expect(await providerUses(user)).toEqual([
      ['groq', `${groqRejected}previews use your own Gemini key instead.`],
      ['gemini', 'your own key'],
    ]);
  });

  it('suggests a working platform key first', async () => {
    const user = await createSignedInUser(context.db, { login: 'platform-rejection-order' });
    const withGemini = createApp({ ...context, config: { ...context.config, GEMINI_API_KEY: platformGeminiKey } });
    await rejectGroqKey();

    expect(await providerUses(user, withGemini)).toEqual([
      ['groq', `${groqRejected}files are not previewed, unless you save a key of your own or put Gemini first.`],
      ['gemini', 'the platform key, charged to your allowance'],
    ]);
  });

  it('tells admins the setting to change', async () => {
    const admin = await createSignedInUser(context.db, { login: 'platform-rejection-admin', role: 'admin' });
    await rejectGroqKey();
    const [row] = await context.db.select().from(platformKeyRejections);
    const home = await pageOf(admin, '/');

    const at = (date: Date) =>
      `<time datetime="${date.toISOString()}">${date.toISOString().slice(0, 16).replace('T', ' ')} UTC</time>`;
    expect(home).toContain(
      `<p data-provider="groq">Groq rejected the platform Groq key (GROQ_API_KEY) with HTTP 401 at ` +
        `${at(row!.rejectedAt)}. Previews send it no requests, and try it again once every 300 s, ` +
        `next at ${at(row!.recheckAt)}. Set GROQ_API_KEY to a working Groq key and restart ` +
        'Fixwright, which uses a new key at once.</p>',
    );
    expect(home).not.toContain(platformGroqKey);
  });

  it('shows nothing for another key', async () => {
    const admin = await createSignedInUser(context.db, { login: 'platform-rejection-other', role: 'admin' });
    await context.db.insert(platformKeyRejections).values({
      provider: 'groq',
      keyHash: hashPlatformKey('gsk_anEarlierPlatformKey0123456789abcd'),
      status: 401,
      recheckAt: sql`now() + interval '1 hour'`,
    });

    const home = await pageOf(admin, '/');
    expect(home).not.toContain('Platform key rejected');
    expect(await providerUses(admin)).toEqual([
      ['groq', 'the platform key, charged to your allowance'],
      ['gemini', 'left out: you have no key for it, and the platform has none'],
    ]);
  });
});
