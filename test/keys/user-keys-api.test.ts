import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AppContext } from '../../src/context.ts';
import { userApiKeys, users } from '../../src/db/schema/index.ts';
import { encryptUserKey } from '../../src/keys/encryption.ts';
import { Keyring } from '../../src/keys/master-keys.ts';
import { undecryptableReason } from '../../src/keys/own-keys.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { keyForms, startKeyCheckServer } from './key-check-server.ts';

const groqKey = 'gsk_userOwnGroqKey0123456789abcdefghijklmnopqrstuvwxyzAB';
const geminiKey = 'AIzaUserOwnGeminiKey0123456789abcdefg';
const replacementGroqKey = 'gsk_userReplacementGroqKey0123456789abcdefghijklmnopqrs';
const rejectedGroqKey = 'gsk_userRejectedGroqKey0123456789abcdefghijklmnopqrstuv';
const rejectedGeminiKey = 'AIzaUserRejectedGeminiKey0123456789abc';
const echoedKey = 'gsk_userEchoedGroqKey0123456789abcdefghijklmnopqrstuvwx';
const platformGroqKey = 'gsk_platformGroqKeyForApiTests0123456789';
const allKeys = [groqKey, geminiKey, replacementGroqKey, rejectedGroqKey, rejectedGeminiKey, echoedKey];

let context: TestContext;
let groq: FakeGroq;
let gemini: FakeGemini;
/** Every response body the tests received, scanned for keys at the end. */
const responses: string[] = [];

async function newUser(login: string) {
  const [user] = await context.db.insert(users).values({ login }).returning();
  const { token } = await mintApiToken(context.db, user!.id, 'test');
  return { id: user!.id, token };
}

async function call(
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
  appContext: AppContext = context,
) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const response = await createApp(appContext).request(path, init);
  const text = await response.text();
  responses.push(text);
  return { status: response.status, text, json: text ? JSON.parse(text) : undefined };
}

async function rawRows(userId: string) {
  return context.db.execute(sql`SELECT * FROM user_api_keys WHERE user_id = ${userId} ORDER BY provider`);
}

beforeAll(async () => {
  groq = await startFakeGroq({ rejectedKeys: [rejectedGroqKey] });
  gemini = await startFakeGemini({ rejectedKeys: [rejectedGeminiKey] });
  context = await createTestContext({
    GROQ_BASE_URL: groq.url,
    GEMINI_BASE_URL: gemini.url,
    GROQ_API_KEY: platformGroqKey,
    LLM_MAX_RETRIES: '0',
  });
});

afterAll(async () => {
  await context?.close();
  await Promise.all([groq?.close(), gemini?.close()]);
});

beforeEach(() => {
  groq.reset();
  gemini.reset();
});

describe('own key API', () => {
  it('stores Groq and Gemini keys encrypted', async () => {
    const user = await newUser('keys-both');
    const savedGroq = await call(user.token, 'PUT', '/api/user/keys/groq', { key: `  ${groqKey}\n` });
    expect(savedGroq.status).toBe(201);
    expect(savedGroq.json.key.provider).toBe('groq');
    expect(savedGroq.json.key.lastFour).toBe(groqKey.slice(-4));
    expect(savedGroq.json.key.lastUsedAt).toBeNull();
    expect(savedGroq.json.key.unusableReason).toBeNull();
    const savedGemini = await call(user.token, 'PUT', '/api/user/keys/gemini', { key: geminiKey });
    expect(savedGemini.status).toBe(201);

    expect(groq.requests.map((request) => [request.path, request.apiKey])).toEqual([
      ['/openai/v1/models', groqKey],
    ]);
    expect(gemini.requests.map((request) => request.apiKey)).toEqual([geminiKey]);
    expect(gemini.requests[0]!.path).toMatch(/^\/v1beta\/models\?/);

    const rows = await rawRows(user.id);
    expect(rows.map((row) => row.provider)).toEqual(['gemini', 'groq']);
    for (const row of rows) {
      expect(row.master_key_version).toBe(1);
      expect(Buffer.from(String(row.nonce), 'base64url')).toHaveLength(24);
    }
    const dump = JSON.stringify(rows);
    for (const form of [...keyForms(groqKey), ...keyForms(geminiKey)]) {
      expect(dump).not.toContain(form);
    }

    const listed = await call(user.token, 'GET', '/api/user/keys');
    expect(listed.status).toBe(200);
    expect(listed.json.providerOrder).toEqual(['groq', 'gemini']);
    expect(listed.json.storageAvailable).toBe(true);
    expect(listed.json.keys.map((key: { provider: string }) => key.provider)).toEqual(['gemini', 'groq']);
    expect(Object.keys(listed.json.keys[0]).sort()).toEqual(
      ['createdAt', 'lastFour', 'lastUsedAt', 'provider', 'unusableReason', 'updatedAt'],
    );

    const usage = await call(user.token, 'GET', '/api/user/usage');
    expect(usage.json.ownKeys).toEqual({ groq: true, gemini: true });
  });

  it('replaces a key with 200', async () => {
    const user = await newUser('keys-replace');
    const first = await call(user.token, 'PUT', '/api/user/keys/groq', { key: groqKey });
    expect(first.status).toBe(201);
    const [before] = await rawRows(user.id);
    const second = await call(user.token, 'PUT', '/api/user/keys/groq', { key: replacementGroqKey });
    expect(second.status).toBe(200);
    expect(second.json.key.lastFour).toBe(replacementGroqKey.slice(-4));
    expect(second.json.key.createdAt).toBe(first.json.key.createdAt);
    expect(Date.parse(second.json.key.updatedAt)).toBeGreaterThan(Date.parse(first.json.key.updatedAt));
    const [after] = await rawRows(user.id);
    expect(after!.id).toBe(before!.id);
    expect(after!.nonce).not.toBe(before!.nonce);
  });

  it('replaces with 200 within one millisecond', async () => {
    const user = await newUser('keys-same-instant');
    const first = await call(user.token, 'PUT', '/api/user/keys/groq', { key: groqKey });
    expect(first.status).toBe(201);
    // Two saves within one millisecond store the same time. A trigger makes the replacement
    // store the creation time, so only the database can tell the replacement apart.
    await context.db.execute(sql.raw(`
      CREATE FUNCTION test_same_instant() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN NEW.updated_at := OLD.created_at; RETURN NEW; END $$;
      CREATE TRIGGER test_same_instant BEFORE UPDATE ON user_api_keys
        FOR EACH ROW EXECUTE FUNCTION test_same_instant()`));
    try {
      const second = await call(user.token, 'PUT', '/api/user/keys/groq', { key: replacementGroqKey });
      expect(second.status).toBe(200);
      expect(second.json.key.updatedAt).toBe(first.json.key.createdAt);
    } finally {
      await context.db.execute(sql.raw(`
        DROP TRIGGER test_same_instant ON user_api_keys;
        DROP FUNCTION test_same_instant()`));
    }
  });

  it('does not store a key of the wrong format', async () => {
    const user = await newUser('keys-format');
    const cases: [unknown, string][] = [
      [{ key: '' }, 'The Groq key is empty'],
      [{ key: '   ' }, 'The Groq key is empty'],
      [{ key: 'gsk_with space_0123456789abcdef' }, 'contains whitespace'],
      [{ key: 'gsk_short' }, 'is 9 characters long, but provider keys are 20 to 256'],
      [{ key: `gsk_${'x'.repeat(300)}` }, 'is 304 characters long'],
      [{ key: 'gsk_non_ascii_ключ_0123456789abcdef' }, 'printable ASCII'],
      [{ key: geminiKey }, 'looks like a Google API key'],
      [{ key: 42 }, 'Invalid key: expected the provider key as a string.'],
      // A key sent in the wrong shape is never quoted back.
      [[groqKey], 'Invalid body: expected a JSON object like {"key": "..."}.'],
      [{ key: [groqKey] }, 'Invalid key: expected the provider key as a string.'],
      [{}, 'Missing key: send a JSON body like {"key": "..."}.'],
      ['{"key": ', 'Request body must be JSON'],
    ];
    for (const [body, expected] of cases) {
      const response = await call(user.token, 'PUT', '/api/user/keys/groq', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.json.error.code).toBe('bad_request');
      expect(response.json.error.message, JSON.stringify(body)).toContain(expected);
      expect(JSON.stringify(response.json)).not.toContain(groqKey);
      // A body that is not JSON has no field to name, and one that is no object names itself.
      const fields = typeof body === 'string' ? undefined : Array.isArray(body) ? ['body'] : ['key'];
      expect(response.json.error.fields, JSON.stringify(body)).toEqual(fields);
    }
    expect(groq.requests).toHaveLength(0);
    expect(await rawRows(user.id)).toHaveLength(0);
  });

  it('does not store a key the provider rejects', async () => {
    const user = await newUser('keys-rejected');
    const groqAnswer = await call(user.token, 'PUT', '/api/user/keys/groq', { key: rejectedGroqKey });
    expect(groqAnswer.status).toBe(400);
    expect(groqAnswer.json.error.message).toMatch(/^Groq rejected the key \(HTTP 401\); check it was copied whole/);
    expect(groqAnswer.json.error.fields).toEqual(['key']);
    const geminiAnswer = await call(user.token, 'PUT', '/api/user/keys/gemini', { key: rejectedGeminiKey });
    expect(geminiAnswer.status).toBe(400);
    expect(geminiAnswer.json.error.message).toMatch(/^Gemini rejected the key \(HTTP 400\)/);
    expect(groq.requests.map((request) => request.apiKey)).toEqual([rejectedGroqKey]);
    expect(await rawRows(user.id)).toHaveLength(0);
    expect((await call(user.token, 'GET', '/api/user/keys')).json.keys).toEqual([]);
  });

  it('redacts a key the provider echoes', async () => {
    const echo = await startKeyCheckServer([]);
    try {
      const user = await newUser('keys-echo');
      const echoContext = {
        ...context,
        config: { ...context.config, GROQ_BASE_URL: echo.url, GEMINI_BASE_URL: echo.url },
      };
      const groqAnswer = await call(user.token, 'PUT', '/api/user/keys/groq', { key: echoedKey }, echoContext);
      expect(groqAnswer.status).toBe(400);
      expect(groqAnswer.json.error.message).toContain('Groq rejected the key (HTTP 401)');
      const geminiAnswer = await call(user.token, 'PUT', '/api/user/keys/gemini', { key: rejectedGeminiKey }, echoContext);
      expect(geminiAnswer.status).toBe(400);
      expect(geminiAnswer.json.error.message).toContain('Gemini rejected the key (HTTP 400)');
      expect(echo.seenKeys).toEqual([echoedKey, rejectedGeminiKey]);
      expect(await rawRows(user.id)).toHaveLength(0);
    } finally {
      await echo.close();
    }
  });

  it('answers 502 when the provider fails the check', async () => {
    const failing = await startKeyCheckServer([], { groqStatus: 503 });
    try {
      const user = await newUser('keys-provider-down');
      const failingContext = { ...context, config: { ...context.config, GROQ_BASE_URL: failing.url } };
      const answer = await call(user.token, 'PUT', '/api/user/keys/groq', { key: echoedKey }, failingContext);
      expect(answer.status).toBe(502);
      expect(answer.json.error.code).toBe('bad_gateway');
      expect(answer.json.error.message).toMatch(/^Could not check the key with Groq: .*The key was not saved; try again later\.$/);
      expect(answer.json.error.message).not.toContain(echoedKey);
      expect(await rawRows(user.id)).toHaveLength(0);
    } finally {
      await failing.close();
    }
  });

  it('answers 502 when the base URL has no model list', async () => {
    const server = await startKeyCheckServer([]);
    try {
      const user = await newUser('keys-wrong-base-url');
      const wrongContext = {
        ...context,
        config: { ...context.config, GROQ_BASE_URL: `${server.url}/nothing`, GEMINI_BASE_URL: `${server.url}/nothing` },
      };
      const cases = [
        { provider: 'groq', key: echoedKey, setting: 'GROQ_BASE_URL' },
        { provider: 'gemini', key: rejectedGeminiKey, setting: 'GEMINI_BASE_URL' },
      ];
      for (const { provider, key, setting } of cases) {
        const answer = await call(user.token, 'PUT', `/api/user/keys/${provider}`, { key }, wrongContext);
        expect(answer.status, provider).toBe(502);
        expect(answer.json.error.code, provider).toBe('bad_gateway');
        expect(answer.json.error.message, provider).toContain('(HTTP 404)');
        expect(answer.json.error.message, provider).toContain(setting);
        expect(answer.json.error.message, provider).not.toContain('model name');
        expect(answer.json.error.message, provider).not.toContain(key);
      }
      expect(server.seenKeys).toEqual([echoedKey, rejectedGeminiKey]);
      expect(await rawRows(user.id)).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it('redacts a key echoed in a quoted provider message', async () => {
    const echo = await startKeyCheckServer([], { groqStatus: 400 });
    try {
      const user = await newUser('keys-echo-quoted');
      const echoContext = { ...context, config: { ...context.config, GROQ_BASE_URL: echo.url } };
      const answer = await call(user.token, 'PUT', '/api/user/keys/groq', { key: echoedKey }, echoContext);
      expect(answer.status).toBe(400);
      expect(answer.json.error.message).toMatch(/^Checking the Groq key failed: Groq rejected the request as invalid \(HTTP 400\): /);
      expect(answer.json.error.message).toContain('Invalid API Key [redacted]');
      expect(answer.json.error.message).not.toContain(echoedKey);
      expect(echo.seenKeys).toEqual([echoedKey]);
      expect(await rawRows(user.id)).toHaveLength(0);
    } finally {
      await echo.close();
    }
  });

  it('answers 503 without a master key', async () => {
    const user = await newUser('keys-no-master');
    const reason = 'No master key is configured: set MASTER_KEY on the server.';
    const response = await call(user.token, 'PUT', '/api/user/keys/groq', { key: groqKey }, {
      ...context,
      keyring: new Keyring([], reason),
    });
    expect(response.status).toBe(503);
    expect(response.json.error).toMatchObject({ code: 'not_configured', message: reason });
    expect(groq.requests).toHaveLength(0);
    expect(await rawRows(user.id)).toHaveLength(0);
  });

  it('lists a key of a missing master key version', async () => {
    const user = await newUser('keys-missing-version');
    expect((await call(user.token, 'PUT', '/api/user/keys/groq', { key: groqKey })).status).toBe(201);
    // What `keys rotate` with version 2 leaves for a process that has only version 1.
    const withV2 = new Keyring([{ version: 2, key: new Uint8Array(randomBytes(32)) }, context.keyring.current()]);
    const rotated = await encryptUserKey(withV2, { userId: user.id, provider: 'groq' }, groqKey);
    await context.db.update(userApiKeys).set(rotated).where(eq(userApiKeys.userId, user.id));
    const missing =
      'Your saved Groq key is encrypted under master key version 2, which this Fixwright ' +
      'process does not have. The operator must restart it with version 2 in MASTER_KEYS. ' +
      'The key does not need to be saved again.';

    const listed = await call(user.token, 'GET', '/api/user/keys');
    expect(listed.json.keys[0].unusableReason).toBe(missing);
    const [unmarked] = await rawRows(user.id);
    expect(unmarked!.unusable_cause).toBeNull();

    // A mark that an earlier release stored when the version was missing.
    await context.db
      .update(userApiKeys)
      .set({ unusableCause: 'undecryptable', unusableReason: undecryptableReason('groq') })
      .where(eq(userApiKeys.userId, user.id));
    const stillMissing = await call(user.token, 'GET', '/api/user/keys');
    expect(stillMissing.json.keys[0].unusableReason).toBe(missing);

    const restarted = await call(user.token, 'GET', '/api/user/keys', undefined, { ...context, keyring: withV2 });
    expect(restarted.json.keys[0].unusableReason).toBeNull();
    const [healed] = await rawRows(user.id);
    expect(healed!.unusable_cause).toBeNull();
    expect(healed!.unusable_reason).toBeNull();
    expect(healed!.master_key_version).toBe(2);
  });

  it('deletes a key with 204, then 404', async () => {
    const user = await newUser('keys-delete');
    expect((await call(user.token, 'PUT', '/api/user/keys/groq', { key: groqKey })).status).toBe(201);
    const deleted = await call(user.token, 'DELETE', '/api/user/keys/groq');
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expect(await rawRows(user.id)).toHaveLength(0);
    const again = await call(user.token, 'DELETE', '/api/user/keys/groq');
    expect(again.status).toBe(404);
    expect(again.json.error.message).toBe('No groq key is stored for you.');
    expect((await call(user.token, 'GET', '/api/user/usage')).json.ownKeys).toEqual({ groq: false, gemini: false });
  });

  it('names an unknown provider', async () => {
    const user = await newUser('keys-unknown');
    for (const [method, body] of [['PUT', { key: groqKey }], ['DELETE', undefined]] as const) {
      const response = await call(user.token, method, '/api/user/keys/openai', body);
      expect(response.status).toBe(400);
      expect(response.json.error.message).toBe('Unknown provider "openai": use groq or gemini.');
    }
    expect(groq.requests).toHaveLength(0);
  });

  it('keeps a user away from other users\' keys', async () => {
    const owner = await newUser('keys-owner');
    const other = await newUser('keys-other');
    expect((await call(owner.token, 'PUT', '/api/user/keys/groq', { key: groqKey })).status).toBe(201);
    expect((await call(other.token, 'GET', '/api/user/keys')).json.keys).toEqual([]);
    expect((await call(other.token, 'DELETE', '/api/user/keys/groq')).status).toBe(404);
    expect(await rawRows(owner.id)).toHaveLength(1);
  });

  it('requires a token', async () => {
    const response = await call(null, 'GET', '/api/user/keys');
    expect(response.status).toBe(401);
    const put = await call(null, 'PUT', '/api/user/keys/groq', { key: groqKey });
    expect(put.status).toBe(401);
    expect(groq.requests).toHaveLength(0);
  });

  it('sets the provider order', async () => {
    const user = await newUser('keys-order');
    const set = await call(user.token, 'PUT', '/api/user/provider-order', { order: ['gemini', 'groq'] });
    expect(set.status).toBe(200);
    expect(set.json.providerOrder).toEqual(['gemini', 'groq']);
    expect((await call(user.token, 'GET', '/api/user/keys')).json.providerOrder).toEqual(['gemini', 'groq']);
    const [row] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(row!.providerOrder).toEqual(['gemini', 'groq']);
  });

  it('rejects an invalid provider order', async () => {
    const user = await newUser('keys-order-invalid');
    const cases: [unknown, string][] = [
      [{ order: ['groq'] }, 'Invalid provider order: "gemini" is missing; expected a list of'],
      [{ order: [] }, 'Invalid provider order: "groq" and "gemini" are missing; expected a list of'],
      [{ order: ['groq', 'groq'] }, '"groq" appears twice'],
      [
        { order: ['groq', 'gemini', 'openai'] },
        'Invalid order[2] "openai": expected a list of "groq" and "gemini" in any order, each once.',
      ],
      [{ order: [null] }, 'Invalid order[0] null: expected a list of'],
      [{ order: 'groq,gemini' }, 'expected a list of "groq" and "gemini"'],
      [{}, 'expected a list of "groq" and "gemini"'],
    ];
    for (const [body, expected] of cases) {
      const response = await call(user.token, 'PUT', '/api/user/provider-order', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.json.error.message, JSON.stringify(body)).toContain(expected);
      expect(response.json.error.fields, JSON.stringify(body)).toEqual(['order']);
      expect(JSON.stringify(response.json)).not.toContain(groqKey);
    }
    const [row] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(row!.providerOrder).toEqual(['groq', 'gemini']);
  });

  it('rejects a deeply nested provider order', async () => {
    const user = await newUser('keys-order-nested');
    const depth = 200_000;
    const body = `{"order": [${'['.repeat(depth)}${']'.repeat(depth)}]}`;

    const response = await call(user.token, 'PUT', '/api/user/provider-order', body);

    expect(response.status).toBe(400);
    expect(response.json.error.code).toBe('bad_request');
    expect(response.json.error.message).toBe(
      'Invalid order[0] (a deeply nested array): expected a list of "groq" and "gemini" in ' +
        'any order, each once.',
    );
    const [row] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(row!.providerOrder).toEqual(['groq', 'gemini']);
  });

  it('keeps keys out of responses and logs', async () => {
    expect(responses.length).toBeGreaterThan(20);
    expect(context.logs.some((line) => line.event === 'user_key.saved')).toBe(true);
    expect(context.logs.some((line) => line.event === 'user_key.check_failed')).toBe(true);
    const logText = JSON.stringify(context.logs);
    const stored = JSON.stringify(await context.db.select().from(userApiKeys));
    for (const key of allKeys) {
      for (const form of keyForms(key)) {
        expect(responses.join('\n')).not.toContain(form);
        expect(logText).not.toContain(form);
        expect(stored).not.toContain(form);
      }
    }
  });
});
