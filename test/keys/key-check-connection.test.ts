import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseUrlSetting } from '../../src/autofix/provider-client.ts';
import { loadConfig } from '../../src/config/env.ts';
import { users } from '../../src/db/schema/index.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import { closedPortUrl } from '../helpers/model-clients.ts';
import { createSignedInUser, formBody, formHeaders } from '../helpers/web.ts';

const groqKey = 'gsk_unreachableGroqKey0123456789abcdefghijklmnopqrstuvwx';
const geminiKey = 'AIzaUnreachableGeminiKey0123456789abcd';

let context: TestContext;
let app: ReturnType<typeof createApp>;
let closed: { url: string; port: number };

beforeAll(async () => {
  closed = await closedPortUrl();
  context = await createTestContext({ GROQ_BASE_URL: closed.url, GEMINI_BASE_URL: closed.url });
  app = createApp(context);
});
afterAll(async () => {
  await context?.close();
});

async function putKey(token: string, provider: string, key: string) {
  const response = await app.request(`/api/user/keys/${provider}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ key }),
  });
  return { status: response.status, json: await response.json() };
}

function expectedMessage(name: string, setting: string): string {
  return (
    `The key was not saved. Could not connect to ${name} at ${closed.url} (connect ECONNREFUSED ` +
    `127.0.0.1:${closed.port}). ${setting} sets this address, so the operator should check that ` +
    'it is right and that the server it names is running.'
  );
}

describe('key check without a provider connection', () => {
  it('words Groq and Gemini alike', async () => {
    const [user] = await context.db.insert(users).values({ login: 'unreachable-api' }).returning();
    const { token } = await mintApiToken(context.db, user!.id, 'test');

    const groq = await putKey(token, 'groq', groqKey);
    const gemini = await putKey(token, 'gemini', geminiKey);

    expect(groq.status).toBe(502);
    expect(gemini.status).toBe(502);
    expect(groq.json.error.code).toBe('bad_gateway');
    expect(groq.json.error.message).toBe(expectedMessage('Groq', 'GROQ_BASE_URL'));
    expect(gemini.json.error.message).toBe(expectedMessage('Gemini', 'GEMINI_BASE_URL'));
    expect(groq.json.error.message).not.toContain('try again later');
  });

  it('logs the base URL setting', async () => {
    const [user] = await context.db.insert(users).values({ login: 'unreachable-log' }).returning();
    const { token } = await mintApiToken(context.db, user!.id, 'test');

    await putKey(token, 'groq', groqKey);
    await putKey(token, 'gemini', geminiKey);

    const lines = logsOf(context, 'user_key.check_failed').filter((line) => line.userId === user!.id);
    expect(lines.map((line) => line.provider)).toEqual(['groq', 'gemini']);
    expect(lines.map((line) => line.baseUrlSetting)).toEqual(['GROQ_BASE_URL', 'GEMINI_BASE_URL']);
    expect(lines.map((line) => line.cause)).toEqual(['unavailable', 'unavailable']);
    expect(lines[0]!.reason).toBe(expectedMessage('Groq', 'GROQ_BASE_URL'));
    expect(JSON.stringify(lines)).not.toContain(groqKey);
  });

  it('shows the message on the keys page', async () => {
    const user = await createSignedInUser(context.db, { login: 'unreachable-page' });

    const response = await app.request('/keys', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken, provider: 'gemini', key: geminiKey }),
    });

    expect(response.status).toBe(502);
    const html = await response.text();
    expect(html).toContain('<h1>Your own model keys</h1>');
    expect(html).toContain(expectedMessage('Gemini', 'GEMINI_BASE_URL'));
    expect(html).not.toContain(geminiKey);
  });
});

describe('base URL setting names', () => {
  it('names only a setting that is set', () => {
    const config = loadConfig({ GROQ_BASE_URL: 'http://127.0.0.1:9' });
    expect(baseUrlSetting(config, 'groq')).toBe('GROQ_BASE_URL');
    expect(baseUrlSetting(config, 'gemini')).toBeUndefined();
  });

  it('treats an empty setting as unset', () => {
    const config = loadConfig({ GEMINI_BASE_URL: ' ' });
    expect(baseUrlSetting(config, 'gemini')).toBeUndefined();
    expect(config.GEMINI_BASE_URL).toBe('https://generativelanguage.googleapis.com');
  });
});
