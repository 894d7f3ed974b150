import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { platformKeyRejections, users, type Provider } from '../../src/db/schema/index.ts';
import { invalidApiKeyBody, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import type { FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { hashPlatformKey, platformKeyRejectedReason } from '../../src/keys/platform-key-rejections.ts';
import { logsOf, type TestContext } from '../helpers/context.ts';
import {
  geminiGenerations,
  groqCompletions,
  previewForUser,
  readAllowance,
  storeOwnKey,
} from '../helpers/own-key-preview.ts';
import {
  answerWithFixedFiles,
  consoleLogFiles,
  consoleLogFixes,
  createPreviewTestContext,
  insertConsoleLogFindings,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const platformGroqKey = 'gsk_platformRejectionTest0123456789abcd';
const platformGeminiKey = 'AIzaPlatformRejectionTest0123456789abcd';
const ownGeminiKey = 'AIzaOwnRejectionTestKey0123456789abcdef';
const ownGroqKey = 'gsk_ownRejectionTestKey0123456789abcdef';
/** The reply of Groq to a key that it does not accept. */
const rejected = { status: 401, body: invalidApiKeyBody() };

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let gemini: FakeGemini;
let runId: string;

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: consoleLogFiles,
    groqApiKey: platformGroqKey,
    geminiApiKey: platformGeminiKey,
    // One file at a time, so the second file starts after the first file's call ended.
    env: { PREVIEW_FILE_CONCURRENCY: '1' },
  });
  ({ context, groq, gemini, runId } = setup);
  await insertConsoleLogFindings(context, runId, Object.keys(consoleLogFiles));
});

afterAll(async () => {
  await setup?.close();
});

beforeEach(async () => {
  answerWithFixedFiles(consoleLogFixes, groq, gemini);
  await context.db.delete(platformKeyRejections);
});

async function newUser(values: { tokensUsed?: number; providerOrder?: Provider[] } = {}) {
  const [user] = await context.db
    .insert(users)
    .values({ login: `rejection-${Math.random().toString(36).slice(2, 9)}`, tokenLimit: 100_000, ...values })
    .returning();
  return user!;
}

const preview = (userId: string, appContext: TestContext = context) =>
  previewForUser(context, { runId, userId }, appContext);
const completions = () => groqCompletions(groq);
const generations = () => geminiGenerations(gemini);
const rejectionRows = () => context.db.select().from(platformKeyRejections);
const groqFileError = platformKeyRejectedReason('groq', 401);

/** Moves the re-check of every recorded rejection into the past. */
async function makeRecheckDue(): Promise<void> {
  await context.db.update(platformKeyRejections).set({ recheckAt: sql`now() - interval '1 second'` });
}

describe('rejected platform keys', () => {
  it('skips the key for later files and previews', async () => {
    const user = await newUser();
    groq.enqueue(rejected);
    const logStart = context.logs.length;
    const first = await preview(user.id);

    expect(first.outcome.status).toBe('failed');
    expect(first.request.error).toBe(groqFileError);
    expect(first.files.map((file) => [file.path, file.status, file.error, file.keyNotice])).toEqual([
      ['src/a.ts', 'failed', groqFileError, null],
      ['src/b.ts', 'failed', groqFileError, null],
    ]);
    expect(groqFileError).toBe(
      'Groq rejected the platform Groq key that this service provides (HTTP 401), so this file ' +
        'was not previewed. The operator of this service has to replace the platform Groq key. ' +
        'Until then, you can save a key of your own on the keys page and regenerate this file.',
    );
    // The first file's call was rejected, and the second file sent no request.
    expect(completions().map((request) => [request.apiKey, request.reply?.status])).toEqual([
      [platformGroqKey, 401],
    ]);
    // A rejected platform key passes no request to the other platform key.
    expect(gemini.requests).toHaveLength(0);
    expect(first.ledger).toHaveLength(0);
    expect(await readAllowance(context, user.id)).toEqual({ used: 0, reserved: 0 });

    const other = await newUser();
    const second = await preview(other.id);
    expect(second.outcome.status).toBe('failed');
    for (const file of second.files) expect(file.error).toBe(groqFileError);
    expect(completions()).toHaveLength(1);
    expect(second.ledger).toHaveLength(0);
    expect(await readAllowance(context, other.id)).toEqual({ used: 0, reserved: 0 });

    const warnings = context.logs.slice(logStart).filter((line) => line.event === 'platform_key.rejected');
    expect(warnings.map((line) => [line.level, line.provider, line.status, line.setting])).toEqual([
      [40, 'groq', 401, 'GROQ_API_KEY'],
    ]);
    expect(logsOf(context, 'preview.platform_key_rejected')).toHaveLength(0);
    expect(JSON.stringify(context.logs)).not.toContain(platformGroqKey);

    const rows = await rejectionRows();
    expect(rows.map((row) => [row.provider, row.keyHash, row.status])).toEqual([
      ['groq', hashPlatformKey(platformGroqKey), 401],
    ]);
    expect(JSON.stringify(rows)).not.toContain(platformGroqKey);
    expect(rows[0]!.recheckAt.getTime() - rows[0]!.rejectedAt.getTime()).toBeGreaterThanOrEqual(599_000);
  });

  it('passes a skipped key to an own key', async () => {
    const user = await newUser({ tokensUsed: 60 });
    await storeOwnKey(context, { userId: user.id, provider: 'gemini' }, ownGeminiKey);
    groq.enqueue(rejected);
    const logStart = context.logs.length;
    const notice =
      'Groq rejected the platform Groq key that this service provides (HTTP 401), so this file ' +
      'used your own Gemini key, the next in your provider order. The operator of this service ' +
      'has to replace the platform Groq key.';

    for (const round of [1, 2]) {
      const result = await preview(user.id);
      expect(result.outcome.status).toBe('ready');
      expect(result.files.map((file) => [file.path, file.status, file.provider, file.keyNotice])).toEqual([
        ['src/a.ts', 'ready', 'gemini', notice],
        ['src/b.ts', 'ready', 'gemini', notice],
      ]);
      expect(result.ledger.map((event) => [event.provider, event.keySource, event.chargedTokens])).toEqual([
        ['gemini', 'user', 0],
        ['gemini', 'user', 0],
      ]);
      // Only the first file of the first preview reached Groq.
      expect(completions()).toHaveLength(1);
      expect(generations().map((request) => request.apiKey)).toEqual(Array(2 * round).fill(ownGeminiKey));
    }
    expect(generations().some((request) => request.apiKey === platformGeminiKey)).toBe(false);
    expect(await readAllowance(context, user.id)).toEqual({ used: 60, reserved: 0 });
    const warnings = context.logs.slice(logStart).filter((line) => line.event === 'platform_key.rejected');
    expect(warnings.map((line) => line.provider)).toEqual(['groq']);
  });

  it('uses own keys of the rejected provider', async () => {
    const user = await newUser();
    await storeOwnKey(context, { userId: user.id, provider: 'groq' }, ownGroqKey);
    await context.db.insert(platformKeyRejections).values({
      provider: 'groq',
      keyHash: hashPlatformKey(platformGroqKey),
      status: 401,
      recheckAt: sql`now() + interval '1 hour'`,
    });
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    for (const file of result.files) expect(file.keyNotice).toBeNull();
    expect(completions().map((request) => request.apiKey)).toEqual([ownGroqKey, ownGroqKey]);
    expect(gemini.requests).toHaveLength(0);
    expect(await readAllowance(context, user.id)).toEqual({ used: 0, reserved: 0 });
  });

  it('uses the key again once a re-check passes', async () => {
    const user = await newUser();
    groq.enqueue(rejected);
    await preview(user.id);
    expect(completions()).toHaveLength(1);
    await makeRecheckDue();
    const logStart = context.logs.length;
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('ready');
    expect(result.files.map((file) => [file.status, file.keyNotice])).toEqual([
      ['ready', null],
      ['ready', null],
    ]);
    expect(completions().map((request) => request.reply?.status)).toEqual([401, 200, 200]);
    expect(await rejectionRows()).toEqual([]);
    const reported = completions()
      .slice(1)
      .reduce((sum, request) => sum + request.reply!.usage!.total_tokens, 0);
    expect(await readAllowance(context, user.id)).toEqual({ used: reported, reserved: 0 });
    const later = context.logs.slice(logStart);
    expect(later.filter((line) => line.event === 'platform_key.recovered').map((line) => [line.level, line.provider])).toEqual([
      [40, 'groq'],
    ]);
    expect(later.filter((line) => line.event === 'platform_key.rejected')).toHaveLength(0);
  });

  it('keeps the key skipped when a re-check fails', async () => {
    const user = await newUser();
    groq.enqueue(rejected, rejected);
    await preview(user.id);
    await makeRecheckDue();
    const logStart = context.logs.length;
    const result = await preview(user.id);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) expect(file.error).toBe(groqFileError);
    // One request for the re-check, none for the second file.
    expect(completions().map((request) => request.reply?.status)).toEqual([401, 401]);
    const later = context.logs.slice(logStart);
    expect(later.filter((line) => line.event === 'platform_key.rejected')).toHaveLength(0);
    expect(later.filter((line) => line.event === 'platform_key.still_rejected')).toHaveLength(1);
    const [row] = await rejectionRows();
    expect(row!.recheckAt.getTime()).toBeGreaterThan(Date.now() + 500_000);
    expect(await readAllowance(context, user.id)).toEqual({ used: 0, reserved: 0 });
  });

  it('uses a replaced key at once', async () => {
    const user = await newUser();
    groq.enqueue(rejected);
    await preview(user.id);
    const replacedKey = 'gsk_platformRejectionTestReplaced0123456';
    const restarted = { ...context, config: { ...context.config, GROQ_API_KEY: replacedKey } };
    const result = await preview(user.id, restarted);

    expect(result.outcome.status).toBe('ready');
    expect(completions().map((request) => [request.apiKey, request.reply?.status])).toEqual([
      [platformGroqKey, 401],
      [replacedKey, 200],
      [replacedKey, 200],
    ]);
    // The old key's rejection stays, for a process that still has the old key.
    expect((await rejectionRows()).map((row) => row.keyHash)).toEqual([hashPlatformKey(platformGroqKey)]);
  });

  it('fails the file when recording fails', async () => {
    const user = await newUser();
    // A trigger, because the tests' database role may bypass privileges.
    await context.db.execute(sql`
      CREATE FUNCTION reject_rejection_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'insert rejected by test trigger'; END $$`);
    await context.db.execute(sql`
      CREATE TRIGGER reject_rejection_insert BEFORE INSERT ON platform_key_rejections
      FOR EACH ROW EXECUTE FUNCTION reject_rejection_insert()`);
    groq.enqueue(rejected, rejected);
    const logStart = context.logs.length;
    try {
      const result = await preview(user.id);

      expect(result.outcome.status).toBe('failed');
      for (const file of result.files) expect(file.error).toBe(groqFileError);
    } finally {
      await context.db.execute(sql`DROP TRIGGER reject_rejection_insert ON platform_key_rejections`);
      await context.db.execute(sql`DROP FUNCTION reject_rejection_insert()`);
    }
    // Nothing was recorded, so the second file tried the key too.
    expect(completions().map((request) => request.reply?.status)).toEqual([401, 401]);
    expect(await rejectionRows()).toEqual([]);
    const failures = context.logs.slice(logStart).filter((line) => line.event === 'platform_key.record_failed');
    expect(failures.map((line) => [line.level, line.provider])).toEqual([
      [50, 'groq'],
      [50, 'groq'],
    ]);
    expect(context.logs.slice(logStart).filter((line) => line.event === 'platform_key.rejected')).toHaveLength(0);
  });

  it('skips a revoked Gemini key', async () => {
    const user = await newUser({ providerOrder: ['gemini', 'groq'] });
    const revokedKey = 'AIza_revoked_platform_key_0001';
    const revoked = { ...context, config: { ...context.config, GEMINI_API_KEY: revokedKey } };
    const geminiError = platformKeyRejectedReason('gemini', 403);
    const result = await preview(user.id, revoked);

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) expect(file.error).toBe(geminiError);
    expect(generations().map((request) => [request.apiKey, request.reply?.status])).toEqual([[revokedKey, 403]]);
    expect(groq.requests).toHaveLength(0);
    expect(logsOf(context, 'platform_key.rejected', { provider: 'gemini' })).toHaveLength(1);
    expect(JSON.stringify(context.logs)).not.toContain(revokedKey);
  });
});
