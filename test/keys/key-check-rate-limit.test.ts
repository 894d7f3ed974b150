import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser, formBody, formHeaders, type SignedInUser } from '../helpers/web.ts';

const firstKey = 'gsk_rateLimitFirstKey0123456789abcdefghijklmnopqrstuvwx';
const secondKey = 'gsk_rateLimitSecondKey0123456789abcdefghijklmnopqrstuvw';
const thirdKey = 'gsk_rateLimitThirdKey0123456789abcdefghijklmnopqrstuvwx';
const rejectedKey = 'gsk_rateLimitRejectedKey0123456789abcdefghijklmnopqrstu';
const limitMessage =
  'Too many key checks: Fixwright checks each key with the provider before saving it, at most ' +
  '2 times an hour per user. The key was not saved, so wait 60 minutes and try again.';

let context: TestContext;
let groq: FakeGroq;
let app: ReturnType<typeof createApp>;
let userCount = 0;

beforeAll(async () => {
  groq = await startFakeGroq({ rejectedKeys: [rejectedKey] });
  context = await createTestContext({
    GROQ_BASE_URL: groq.url,
    LLM_MAX_RETRIES: '0',
    KEY_CHECK_RATE_LIMIT: '2',
  });
  app = createApp(context);
});
afterAll(async () => {
  await context?.close();
  await groq?.close();
});
beforeEach(() => {
  groq.reset();
});

/** Creates a user with a dashboard session and a personal access token. */
async function newUser(): Promise<SignedInUser & { token: string }> {
  const user = await createSignedInUser(context.db, { login: `key-check-${userCount++}` });
  const { token } = await mintApiToken(context.db, user.userId, 'test');
  return { ...user, token };
}

function putKey(user: { token: string }, key: string) {
  return app.request('/api/user/keys/groq', {
    method: 'PUT',
    headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ key }),
  });
}

function postKeyForm(user: SignedInUser, key: string) {
  return app.request('/keys', {
    method: 'POST',
    headers: formHeaders(user),
    body: formBody({ _csrf: user.csrfToken, provider: 'groq', key }),
  });
}

async function storedLastFour(userId: string): Promise<string | undefined> {
  const rows = await context.db.execute<{ last_four: string }>(
    sql`SELECT last_four FROM user_api_keys WHERE user_id = ${userId} AND provider = 'groq'`,
  );
  return rows[0]?.last_four;
}

function checkedKeys(): (string | undefined)[] {
  return groq.requests.map((request) => request.apiKey);
}

describe('key check rate limit', () => {
  it('returns 429 past the limit', async () => {
    const user = await newUser();
    expect((await putKey(user, rejectedKey)).status).toBe(400);
    expect((await putKey(user, firstKey)).status).toBe(201);

    const limited = await putKey(user, secondKey);

    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(3500);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    const body = (await limited.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('rate_limited');
    expect(body.error.message).toBe(limitMessage);
    expect(checkedKeys()).toEqual([rejectedKey, firstKey]);
    expect(await storedLastFour(user.userId)).toBe(firstKey.slice(-4));
    const warning = context.logs.find(
      (line) => line.event === 'user_key.rate_limited' && line.userId === user.userId,
    );
    expect(warning).toMatchObject({ level: 40, provider: 'groq', retryAfterSeconds: retryAfter });
  });

  it('counts the form and the API together', async () => {
    const user = await newUser();
    expect((await putKey(user, firstKey)).status).toBe(201);
    expect((await postKeyForm(user, secondKey)).status).toBe(303);

    const limited = await postKeyForm(user, thirdKey);

    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(3500);
    expect(await limited.text()).toContain(limitMessage);
    expect(checkedKeys()).toEqual([firstKey, secondKey]);
    expect(await storedLastFour(user.userId)).toBe(secondKey.slice(-4));
    expect((await putKey(user, thirdKey)).status).toBe(429);
    expect(checkedKeys()).toHaveLength(2);
  });

  it('counts each user separately', async () => {
    const limitedUser = await newUser();
    const otherUser = await newUser();
    await putKey(limitedUser, firstKey);
    await putKey(limitedUser, secondKey);
    expect((await putKey(limitedUser, thirdKey)).status).toBe(429);

    const other = await putKey(otherUser, thirdKey);

    expect(other.status).toBe(201);
    expect(checkedKeys()).toEqual([firstKey, secondKey, thirdKey]);
  });

  it('does not count keys of an invalid format', async () => {
    const user = await newUser();
    for (const key of ['', 'not-a-groq-key', 'gsk_short']) {
      expect((await putKey(user, key)).status, JSON.stringify(key)).toBe(400);
    }
    expect(checkedKeys()).toEqual([]);

    expect((await putKey(user, firstKey)).status).toBe(201);
    expect((await putKey(user, secondKey)).status).toBe(200);
    expect(checkedKeys()).toEqual([firstKey, secondKey]);
  });

  it('allows checks again in a new window', async () => {
    const user = await newUser();
    await putKey(user, firstKey);
    await putKey(user, secondKey);
    expect((await putKey(user, thirdKey)).status).toBe(429);
    await context.db.execute(sql`
      UPDATE rate_limit_windows SET resets_at = now() - interval '1 second'
      WHERE key = ${`key-check:${user.userId}`}`);

    expect((await putKey(user, thirdKey)).status).toBe(200);
    expect(checkedKeys()).toEqual([firstKey, secondKey, thirdKey]);
  });
});
