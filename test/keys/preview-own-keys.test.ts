import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { minimumCallTokens } from '../../src/autofix/preview.ts';
import { estimateFileCalls } from '../../src/autofix/preview-budget.ts';
import { findings, userApiKeys, users, type Provider } from '../../src/db/schema/index.ts';
import { Keyring } from '../../src/keys/master-keys.ts';
import { geminiErrorBody, leakedKeyBody, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { groqErrorBody, invalidApiKeyBody, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { saveUserKey } from '../../src/keys/user-keys.ts';
import type { TestContext } from '../helpers/context.ts';
import {
  findOwnKey,
  geminiGenerations,
  groqCompletions,
  previewForUser,
  readAllowance,
  storeOwnKey,
} from '../helpers/own-key-preview.ts';
import {
  answerWithFixedFiles,
  createPreviewTestContext,
  insertConsoleLogFindings,
  pathInPrompt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';
import { keyForms } from './key-check-server.ts';

const platformGroqKey = 'gsk_platformOwnKeyPreviewTest0123456789';
const platformGeminiKey = 'AIzaPlatformOwnKeyPreviewTest0123456789';
const files = {
  'src/a.ts': "export const a = 1;\nconsole.log('a', a);\n",
  'src/b.ts': "export const b = 2;\nconsole.log('b', b);\n",
};
const fixed: Record<string, string> = {
  'src/a.ts': 'export const a = 1;\n',
  'src/b.ts': 'export const b = 2;\n',
};
const rateLimited = {
  status: 429,
  headers: { 'retry-after': '3600' },
  body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded'),
};

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let gemini: FakeGemini;
let runId: string;
/** Every own key the tests stored, scanned for in logs and stored rows at the end. */
const ownKeys: string[] = [];
let keyCounter = 0;

function newKey(provider: Provider): string {
  keyCounter++;
  const suffix = `${keyCounter}`.padStart(4, '0');
  const key = provider === 'groq' ? `gsk_ownPreviewKey${suffix}abcdefghijklmnop` : `AIzaOwnPreviewKey${suffix}abcdefghijklmnop`;
  ownKeys.push(key);
  return key;
}

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: files,
    groqApiKey: platformGroqKey,
    geminiApiKey: platformGeminiKey,
    // One file at a time, so the second file always reads what the first recorded about a key.
    env: { PREVIEW_FILE_CONCURRENCY: '1' },
  });
  ({ context, groq, gemini, runId } = setup);
  await insertConsoleLogFindings(context, runId, Object.keys(files));
});

afterAll(async () => {
  await setup?.close();
});

beforeEach(() => {
  answerWithFixedFiles(fixed, groq, gemini);
});

async function newUser(values: { tokenLimit?: number; tokensUsed?: number; providerOrder?: Provider[] } = {}) {
  const [user] = await context.db
    .insert(users)
    .values({ login: `own-${Math.random().toString(36).slice(2, 9)}`, tokenLimit: 100_000, ...values })
    .returning();
  return user!;
}

const storeKey = (userId: string, provider: Provider, key: string, keyring = context.keyring) =>
  storeOwnKey(context, { userId, provider }, key, keyring);
const storedKey = async (userId: string, provider: Provider) => (await findOwnKey(context, userId, provider))!;
/** Runs a preview. `appContext` is the context of a process started with other settings. */
const preview = (userId: string, appContext: TestContext = context) =>
  previewForUser(context, { runId, userId }, appContext);
const allowanceOf = (userId: string) => readAllowance(context, userId);

/** Builds the reason stored for an own key that the provider rejected while a platform key is set. */
function rejectedWithPlatformKey(name: string, status: number): string {
  return (
    `${name} rejected your saved ${name} key with HTTP ${status}. Previews skip this key, and the ` +
    `platform ${name} key while this key is saved. Delete it to let previews use the platform ` +
    'key, or save it again on the keys page.'
  );
}
const completions = () => groqCompletions(groq);
const generations = () => geminiGenerations(gemini);

describe('previews with own keys', () => {
  it('uses an own Groq key without charging', async () => {
    const user = await newUser({ tokensUsed: 100 });
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(result.files.map((file) => [file.path, file.status, file.provider])).toEqual([
      ['src/a.ts', 'ready', 'groq'],
      ['src/b.ts', 'ready', 'groq'],
    ]);
    expect(completions().map((request) => request.apiKey)).toEqual([key, key]);
    expect(gemini.requests).toHaveLength(0);
    expect(await allowanceOf(user.id)).toEqual({ used: 100, reserved: 0 });
    expect(result.ledger).toHaveLength(2);
    for (const event of result.ledger) {
      expect(event.keySource).toBe('user');
      expect(event.chargedTokens).toBe(0);
      expect(event.reservationId).toBeNull();
      expect(event.totalTokens).toBeGreaterThan(0);
    }
    const reported = completions().reduce((sum, request) => sum + request.reply!.usage!.total_tokens, 0);
    expect(result.request.totalTokens).toBe(reported);
    const [reservations] = await context.db.execute<{ count: string }>(
      sql`SELECT count(*) FROM token_reservations WHERE user_id = ${user.id}`,
    );
    expect(Number(reservations!.count)).toBe(0);
    const row = await storedKey(user.id, 'groq');
    expect(row.lastUsedAt).toBeInstanceOf(Date);
    expect(row.updatedAt.getTime()).toBe(row.createdAt.getTime());
  });

  it('charges a user without keys', async () => {
    const user = await newUser();
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(completions().map((request) => request.apiKey)).toEqual([platformGroqKey, platformGroqKey]);
    const reported = completions().reduce((sum, request) => sum + request.reply!.usage!.total_tokens, 0);
    expect(await allowanceOf(user.id)).toEqual({ used: reported, reserved: 0 });
    for (const event of result.ledger) {
      expect(event.keySource).toBe('platform');
      expect(event.chargedTokens).toBe(event.totalTokens);
    }
  });

  it('follows the provider order', async () => {
    const user = await newUser({ providerOrder: ['gemini', 'groq'] });
    const key = newKey('gemini');
    await storeKey(user.id, 'gemini', key);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(generations().map((request) => request.apiKey)).toEqual([key, key]);
    expect(completions()).toHaveLength(0);
    expect(result.ledger.map((event) => [event.provider, event.keySource])).toEqual([
      ['gemini', 'user'],
      ['gemini', 'user'],
    ]);
  });

  it('fails the file when the own key is rejected', async () => {
    const user = await newUser();
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    groq.rejectKey(key);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) {
      expect(file.status).toBe('failed');
      expect(file.error).toBe(rejectedWithPlatformKey('Groq', 401));
    }
    expect(result.request.error).toContain(rejectedWithPlatformKey('Groq', 401));
    // The second file reads the key marked rejected and does not send it again.
    expect(completions().map((request) => request.apiKey)).toEqual([key]);
    expect(groq.requests.some((request) => request.apiKey === platformGroqKey)).toBe(false);
    // Gemini has only the platform key here, which would charge the allowance.
    expect(gemini.requests).toHaveLength(0);
    expect(result.ledger).toHaveLength(0);
    for (const file of result.files) expect(file.keyNotice).toBeNull();
    expect(await allowanceOf(user.id)).toEqual({ used: 0, reserved: 0 });
    const row = await storedKey(user.id, 'groq');
    expect(row.unusableCause).toBe('rejected');
    expect(row.unusableReason).toBe(rejectedWithPlatformKey('Groq', 401));
    // Groq responded to the call, so the key was sent, which "last used" shows.
    expect(row.lastUsedAt).toBeInstanceOf(Date);
  });

  it('omits the platform key hint without one', async () => {
    const user = await newUser();
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    groq.rejectKey(key);
    const withoutGroqKey = { ...context, config: { ...context.config, GROQ_API_KEY: undefined } };
    const result = await preview(user.id, withoutGroqKey);

    const expected =
      'Groq rejected your saved Groq key with HTTP 401. Previews skip this key until you save ' +
      'it again on the keys page.';
    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) expect(file.error).toBe(expected);
    expect((await storedKey(user.id, 'groq')).unusableReason).toBe(expected);
  });

  it('passes a rejected own key on to the next own key', async () => {
    const user = await newUser({ tokensUsed: 40 });
    const groqKey = newKey('groq');
    const geminiKey = newKey('gemini');
    await storeKey(user.id, 'groq', groqKey);
    await storeKey(user.id, 'gemini', geminiKey);
    groq.rejectKey(groqKey);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(result.request.status).toBe('ready');
    expect(result.request.error).toBeNull();
    for (const file of result.files) {
      expect(file.status).toBe('ready');
      expect(file.error).toBeNull();
      expect(file.provider).toBe('gemini');
      expect(file.proposedText).toBe(fixed[file.path]);
    }
    // The second file passes over the key that the first file's call got marked rejected, so
    // its notice has no HTTP status.
    expect(Object.fromEntries(result.files.map((file) => [file.path, file.keyNotice]))).toEqual({
      'src/a.ts':
        'Groq rejected your saved Groq key (HTTP 401), so this file used your own Gemini key, the ' +
        'next in your provider order, and not the platform key. Update your Groq key on the keys page.',
      'src/b.ts':
        'Groq rejected your saved Groq key, so this file used your own Gemini key, the next in ' +
        'your provider order, and not the platform key. Update your Groq key on the keys page.',
    });
    // Only the first file sends the Groq key; both then use the own Gemini key.
    expect(completions().map((request) => [request.apiKey, request.reply?.status])).toEqual([[groqKey, 401]]);
    expect(generations().map((request) => [request.apiKey, request.reply?.status])).toEqual([
      [geminiKey, 200],
      [geminiKey, 200],
    ]);
    expect(result.ledger.map((event) => [event.provider, event.keySource, event.chargedTokens])).toEqual([
      ['gemini', 'user', 0],
      ['gemini', 'user', 0],
    ]);
    expect(await allowanceOf(user.id)).toEqual({ used: 40, reserved: 0 });
    const rejected = await storedKey(user.id, 'groq');
    expect(rejected.unusableCause).toBe('rejected');
    expect(rejected.unusableReason).toBe(rejectedWithPlatformKey('Groq', 401));
    expect(rejected.lastUsedAt).toBeInstanceOf(Date);
    const used = await storedKey(user.id, 'gemini');
    expect(used.unusableCause).toBeNull();
    expect(used.lastUsedAt).toBeInstanceOf(Date);
    expect(context.logs.some((line) => line.event === 'preview.rejected_key_passed_on' && line.provider === 'gemini')).toBe(
      true,
    );
  });

  it('skips a provider whose key was rejected before', async () => {
    const user = await newUser();
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    groq.rejectKey(key);
    await preview(user.id);
    groq.reset();
    gemini.reset();
    gemini.setHandler((request) => ({ text: fixed[pathInPrompt(request.userText)]! }));

    const result = await preview(user.id);
    expect(result.outcome.status).toBe('ready');
    expect(groq.requests).toHaveLength(0);
    expect(generations().map((request) => request.apiKey)).toEqual([platformGeminiKey, platformGeminiKey]);
  });

  it('redacts a key the provider echoes', async () => {
    const user = await newUser();
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    const echo = {
      status: 400,
      body: groqErrorBody(`Model not allowed for key ${key}; see /keys?api_key=${key}`, 'invalid_request_error'),
    };
    groq.enqueue(echo, echo);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) {
      expect(file.error).toContain('Groq rejected the request as invalid (HTTP 400)');
      expect(file.error).toContain('[redacted]');
      expect(file.error).not.toContain(key);
    }
    const row = await storedKey(user.id, 'groq');
    expect(row.unusableCause).toBeNull();
  });

  it('handles Gemini\'s invalid key answer that echoes the key', async () => {
    const user = await newUser({ providerOrder: ['gemini', 'groq'] });
    const key = newKey('gemini');
    await storeKey(user.id, 'gemini', key);
    const invalid = {
      status: 400,
      body: geminiErrorBody(400, 'INVALID_ARGUMENT', `API key not valid: ${key} (?key=${key})`, [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID' },
      ]),
    };
    gemini.enqueue(invalid, invalid);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) {
      expect(file.error).toBe(rejectedWithPlatformKey('Gemini', 400));
    }
    expect(completions()).toHaveLength(0);
    expect(gemini.requests.some((request) => request.apiKey === platformGeminiKey)).toBe(false);
    expect((await storedKey(user.id, 'gemini')).unusableCause).toBe('rejected');
  });

  it('does not fall back from an own key to a platform key', async () => {
    const user = await newUser();
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    groq.enqueue(rateLimited, rateLimited);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) expect(file.error).toContain('Groq rate limit reached');
    expect(gemini.requests).toHaveLength(0);
    expect(await allowanceOf(user.id)).toEqual({ used: 0, reserved: 0 });
    expect((await storedKey(user.id, 'groq')).unusableCause).toBeNull();
  });

  it('falls back from a platform key to an own key', async () => {
    const user = await newUser({ tokensUsed: 50 });
    const key = newKey('gemini');
    await storeKey(user.id, 'gemini', key);
    groq.enqueue(rateLimited, rateLimited);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(completions().map((request) => request.apiKey)).toEqual([platformGroqKey, platformGroqKey]);
    expect(generations().map((request) => request.apiKey)).toEqual([key, key]);
    expect(result.ledger.map((event) => [event.provider, event.keySource, event.chargedTokens])).toEqual([
      ['gemini', 'user', 0],
      ['gemini', 'user', 0],
    ]);
    expect(await allowanceOf(user.id)).toEqual({ used: 50, reserved: 0 });
  });

  it('uses own keys when the allowance is spent', async () => {
    const user = await newUser({ tokenLimit: 1000, tokensUsed: 1000 });
    const key = newKey('gemini');
    await storeKey(user.id, 'gemini', key);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(completions()).toHaveLength(0);
    expect(generations().map((request) => request.apiKey)).toEqual([key, key]);
    expect(await allowanceOf(user.id)).toEqual({ used: 1000, reserved: 0 });
    expect(context.logs.some((line) => line.event === 'preview.platform_skipped')).toBe(true);
  });

  it('runs own-key-only users past the allowance', async () => {
    const user = await newUser({ tokenLimit: 1000, tokensUsed: 1000 });
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(completions().map((request) => request.apiKey)).toEqual([key, key]);
    expect(gemini.requests).toHaveLength(0);
    expect(await allowanceOf(user.id)).toEqual({ used: 1000, reserved: 0 });
  });

  it('turns to own keys when a reservation fails', async () => {
    // The pre-check estimates each file without its content, because the run recorded no
    // sizes. Exactly the smallest such estimate left passes it, but not a call's reservation,
    // whose prompt contains the file as well.
    const rows = await context.db.select().from(findings).where(eq(findings.runId, runId));
    expect(rows.every((row) => row.fileBytes === null)).toBe(true);
    const leastCall = Math.min(...estimateFileCalls(rows).map((call) => call.tokens));
    expect(leastCall).toBeGreaterThan(minimumCallTokens);
    const user = await newUser({ tokenLimit: 1000, tokensUsed: 1000 - leastCall });
    const key = newKey('gemini');
    await storeKey(user.id, 'gemini', key);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(completions()).toHaveLength(0);
    expect(generations().map((request) => request.apiKey)).toEqual([key, key]);
    expect(await allowanceOf(user.id)).toEqual({ used: 1000 - leastCall, reserved: 0 });
    expect(context.logs.some((line) => line.event === 'preview.platform_skipped' && line.userId === user.id)).toBe(false);
  });

  it('marks a tampered key unusable without crashing', async () => {
    const user = await newUser();
    const key = newKey('groq');
    await storeKey(user.id, 'groq', key);
    const row = await storedKey(user.id, 'groq');
    const bytes = Buffer.from(row.ciphertext, 'base64url');
    bytes[0]! ^= 0xff;
    await context.db
      .update(userApiKeys)
      .set({ ciphertext: bytes.toString('base64url') })
      .where(eq(userApiKeys.id, row.id));
    const result = await preview(user.id);

    // Groq is left out entirely, its platform key included; Gemini's platform key serves.
    expect(result.outcome.status).toBe('ready');
    expect(groq.requests).toHaveLength(0);
    expect(generations().map((request) => request.apiKey)).toEqual([platformGeminiKey, platformGeminiKey]);
    const marked = await storedKey(user.id, 'groq');
    expect(marked.unusableCause).toBe('undecryptable');
    expect(marked.unusableReason).toBe(
      'Your saved Groq key could not be decrypted; the master key may have changed. ' +
        'Save the Groq key again on the keys page.',
    );
    const warning = context.logs.find(
      (line) => line.event === 'user_key.undecryptable' && line.userId === user.id,
    );
    expect(warning?.cause).toBe('authentication');
  });

  it('says so when no other client remains', async () => {
    const user = await newUser();
    await storeKey(user.id, 'groq', newKey('groq'));
    await storeKey(user.id, 'gemini', newKey('gemini'));
    await context.db
      .update(userApiKeys)
      .set({ nonce: Buffer.alloc(24, 7).toString('base64url') })
      .where(eq(userApiKeys.userId, user.id));
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) {
      expect(file.status).toBe('failed');
      expect(file.error).toContain('Your saved Groq key could not be decrypted');
      expect(file.error).toContain('Your saved Gemini key could not be decrypted');
      expect(file.error).toContain('No other model provider is available to you.');
    }
    expect(result.request.status).toBe('failed');
    expect(result.request.error).toBe(result.files[0]!.error);
    expect(result.request.filesDone).toBe(2);
    expect(groq.requests).toHaveLength(0);
    expect(gemini.requests).toHaveLength(0);
  });

  it('reports a master key version this process lacks', async () => {
    const user = await newUser();
    const groqKey = newKey('groq');
    const geminiKey = newKey('gemini');
    // Keys saved, or rotated by `keys rotate`, by a process that has version 2, while this
    // process still has only version 1.
    const withV2 = new Keyring([{ version: 2, key: new Uint8Array(randomBytes(32)) }, context.keyring.current()]);
    await storeKey(user.id, 'groq', groqKey, withV2);
    await storeKey(user.id, 'gemini', geminiKey, withV2);
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) {
      expect(file.status).toBe('failed');
      expect(file.error).toContain(
        'Your saved Groq key is encrypted under master key version 2, which this Fixwright ' +
          'process does not have. The operator must restart it with version 2 in MASTER_KEYS. ' +
          'The key does not need to be saved again.',
      );
      expect(file.error).toContain('Your saved Gemini key is encrypted under master key version 2');
      expect(file.error).not.toContain('could not be decrypted');
    }
    expect(groq.requests).toHaveLength(0);
    expect(gemini.requests).toHaveLength(0);
    for (const provider of ['groq', 'gemini'] as const) {
      const row = await storedKey(user.id, provider);
      expect(row.masterKeyVersion).toBe(2);
      expect(row.unusableCause).toBeNull();
      expect(row.unusableReason).toBeNull();
    }
    const warning = context.logs.find(
      (line) => line.event === 'user_key.master_key_version_missing' && line.userId === user.id,
    );
    expect(warning?.masterKeyVersion).toBe(2);
    expect(warning?.configuredVersions).toEqual([1]);

    // The same keys work once the process is restarted with both versions.
    const restarted = await preview(user.id, { ...context, keyring: withV2 });
    expect(restarted.outcome.status).toBe('ready');
    expect(completions().map((request) => request.apiKey)).toEqual([groqKey, groqKey]);
    expect(restarted.ledger.map((event) => event.keySource)).toEqual(['user', 'user']);
  });

  it('does not decrypt a row copied to another user', async () => {
    const owner = await newUser();
    const key = newKey('groq');
    await storeKey(owner.id, 'groq', key);
    const original = await storedKey(owner.id, 'groq');
    const thief = await newUser();
    await context.db.insert(userApiKeys).values({
      userId: thief.id,
      provider: 'groq',
      ciphertext: original.ciphertext,
      nonce: original.nonce,
      masterKeyVersion: original.masterKeyVersion,
      lastFour: original.lastFour,
    });
    const result = await preview(thief.id);

    expect(groq.requests.some((request) => request.apiKey === key)).toBe(false);
    expect(result.outcome.status).toBe('ready');
    expect(generations().map((request) => request.apiKey)).toEqual([platformGeminiKey, platformGeminiKey]);
    expect((await storedKey(thief.id, 'groq')).unusableCause).toBe('undecryptable');
    expect((await storedKey(owner.id, 'groq')).unusableCause).toBeNull();
  });

  it.each([
    ['groq', 'Groq', 'gsk_revokedPreviewKey0001abcdefghijklmn', 401, invalidApiKeyBody()],
    ['gemini', 'Gemini', 'AIzarevokedPreviewKey0001abcdefghijklmn', 403, leakedKeyBody()],
  ] as const)('marks a revoked %s key unusable', async (provider, name, key, status, errorBody) => {
    ownKeys.push(key);
    const other = provider === 'groq' ? 'gemini' : 'groq';
    const user = await newUser({ providerOrder: [provider, other] });
    const fake = provider === 'groq' ? groq : gemini;

    // The fake accepts the key for the model list, so the key check passes and it is saved.
    const saved = await saveUserKey(context, { userId: user.id, provider, key });
    expect(saved.ok).toBe(true);
    const listed = fake.requests.filter((request) => request.apiKey === key && request.method === 'GET');
    expect(listed.map((request) => request.reply?.status)).toEqual([200]);

    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) {
      expect(file.status).toBe('failed');
      expect(file.error).toBe(rejectedWithPlatformKey(name, status));
    }
    const calls = fake.requests.filter((request) => request.apiKey === key && request.method === 'POST');
    // The second file reads the key marked rejected by the first and does not send it.
    expect(calls.map((request) => request.reply?.status)).toEqual([status]);
    const row = await storedKey(user.id, provider);
    expect(row.unusableCause).toBe('rejected');
    expect(row.unusableReason).toBe(rejectedWithPlatformKey(name, status));
    expect(await allowanceOf(user.id)).toEqual({ used: 0, reserved: 0 });

    // The body is the provider's own error format, as its SDK reads it.
    const generationPath =
      provider === 'groq' ? '/openai/v1/chat/completions' : '/v1beta/models/gemini-2.5-flash:generateContent';
    const headers: Record<string, string> =
      provider === 'groq' ? { authorization: `Bearer ${key}` } : { 'x-goog-api-key': key };
    const response = await fetch(`${fake.url}${generationPath}`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(response.status).toBe(status);
    expect(await response.json()).toEqual(errorBody);
  });

  it('keeps own keys out of logs, stored rows and job data', async () => {
    expect(ownKeys.length).toBeGreaterThan(8);
    const logText = JSON.stringify(context.logs);
    const tables = await Promise.all([
      context.db.execute(sql`SELECT * FROM patch_files`),
      context.db.execute(sql`SELECT * FROM patch_requests`),
      context.db.execute(sql`SELECT * FROM token_events`),
      context.db.execute(sql`SELECT * FROM user_api_keys`),
      context.db.execute(sql`SELECT data, output FROM pgboss.job`),
    ]);
    const stored = JSON.stringify(tables);
    expect(stored).toContain('[redacted]');
    for (const key of ownKeys) {
      for (const form of keyForms(key)) {
        expect(logText).not.toContain(form);
        expect(stored).not.toContain(form);
      }
    }
  });
});
