import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { platformKeyRejections, users } from '../../src/db/schema/index.ts';
import { groqErrorBody, invalidApiKeyBody, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import {
  endPlatformKeyRecheck,
  hashPlatformKey,
  platformKeyRejectedReason,
  recordPlatformKeyRejection,
} from '../../src/keys/platform-key-rejections.ts';
import { logsOf, type TestContext } from '../helpers/context.ts';
import { groqCompletions, previewForUser, readAllowance } from '../helpers/own-key-preview.ts';
import {
  createPreviewTestContext,
  insertConsoleLogFindings,
  pathInPrompt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const platformGroqKey = 'gsk_platformRecheckWaitTest0123456789ab';
const paths = ['a', 'b', 'c', 'd', 'e', 'f'].map((name) => `src/${name}.ts`);
const head = Object.fromEntries(
  paths.map((path, index) => [path, `export const v = ${index};\nconsole.log(v);\n`]),
);
const fixes = Object.fromEntries(paths.map((path, index) => [path, `export const v = ${index};\n`]));
/** How long the fake Groq delays its reply to the re-check, so that the other files overlap it. */
const recheckDelayMs = 400;
const keyHash = hashPlatformKey(platformGroqKey);

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let runId: string;
/** performance.now() of each chat completion request as the fake Groq received it. */
let arrivals: number[];

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head,
    groqApiKey: platformGroqKey,
    env: { PREVIEW_FILE_CONCURRENCY: '6' },
  });
  ({ context, groq, runId } = setup);
  await insertConsoleLogFindings(context, runId, paths);
});

afterAll(async () => {
  await setup?.close();
});

beforeEach(async () => {
  arrivals = [];
  groq.reset();
  groq.setHandler((request) => {
    arrivals.push(performance.now());
    const text = fixes[pathInPrompt(request.messages.at(-1)!.content)]!;
    return arrivals.length === 1 ? { text, delayMs: recheckDelayMs } : { text };
  });
  await context.db.delete(platformKeyRejections);
});

async function newUser() {
  const [user] = await context.db
    .insert(users)
    .values({ login: `recheck-${Math.random().toString(36).slice(2, 9)}`, tokenLimit: 100_000 })
    .returning();
  return user!;
}

/** Records a rejection of the platform Groq key whose re-check is `due` or an hour away. */
async function recordRejection(due: boolean): Promise<void> {
  await context.db.insert(platformKeyRejections).values({
    provider: 'groq',
    keyHash,
    status: 401,
    recheckAt: due ? sql`now() - interval '1 second'` : sql`now() + interval '1 hour'`,
  });
}

describe('platform key re-check', () => {
  it('lets concurrent files wait for it', async () => {
    await recordRejection(true);
    const logStart = context.logs.length;
    const owners = await Promise.all([newUser(), newUser(), newUser(), newUser()]);
    const results = await Promise.all(owners.map((user) => previewForUser(context, { runId, userId: user.id })));

    for (const result of results) {
      expect(result.outcome.status).toBe('ready');
      expect(result.files.map((file) => [file.path, file.status, file.error])).toEqual(
        paths.map((path) => [path, 'ready', null]),
      );
    }
    const completions = groqCompletions(groq);
    expect(completions).toHaveLength(24);
    expect(completions.filter((request) => request.reply?.status !== 200)).toEqual([]);
    expect(completions.every((request) => request.apiKey === platformGroqKey)).toBe(true);
    // Exactly one request, the re-check, went out before the provider accepted the key again.
    const recheckAnswered = arrivals[0]! + recheckDelayMs - 5;
    expect(arrivals.filter((time) => time < recheckAnswered)).toHaveLength(1);
    expect(await context.db.select().from(platformKeyRejections)).toEqual([]);
    expect(context.logs.slice(logStart).filter((line) => line.event === 'platform_key.recovered')).toHaveLength(1);
    for (const [index, user] of owners.entries()) {
      const reported = results[index]!.ledger.reduce((sum, event) => sum + event.chargedTokens, 0);
      expect(reported).toBeGreaterThan(0);
      expect(await readAllowance(context, user.id)).toEqual({ used: reported, reserved: 0 });
    }
  });

  it('fails waiting files when it fails', async () => {
    await recordRejection(true);
    groq.enqueue({ status: 401, body: invalidApiKeyBody(), delayMs: recheckDelayMs });
    const owners = await Promise.all([newUser(), newUser()]);
    const results = await Promise.all(owners.map((user) => previewForUser(context, { runId, userId: user.id })));

    const error = platformKeyRejectedReason('groq', 401);
    for (const result of results) {
      expect(result.outcome.status).toBe('failed');
      for (const file of result.files) expect(file.error).toBe(error);
      expect(result.ledger).toEqual([]);
    }
    expect(groqCompletions(groq).map((request) => request.reply?.status)).toEqual([401]);
    for (const user of owners) expect(await readAllowance(context, user.id)).toEqual({ used: 0, reserved: 0 });
    const [row] = await context.db.select().from(platformKeyRejections);
    expect(row!.recheckStartedAt).toBeNull();
  });

  it('waits for a re-check of another process', async () => {
    // Another process passes the re-check while this process's preview waits for it.
    const result = await previewDuringOtherRecheck(() => context.db.delete(platformKeyRejections));

    expect(result.outcome.status).toBe('ready');
    expect(result.files.map((file) => file.status)).toEqual(paths.map(() => 'ready'));
    expect(groqCompletions(groq)).toHaveLength(6);
    expect(logsOf(context, 'platform_key.read_failed')).toHaveLength(0);
  });

  it('skips the key without a running re-check', async () => {
    await recordRejection(false);
    const user = await newUser();
    const result = await previewForUser(context, { runId, userId: user.id });

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) expect(file.error).toBe(platformKeyRejectedReason('groq', 401));
    expect(groqCompletions(groq)).toHaveLength(0);
  });
});

/**
 * Returns the context of a process whose model requests time out after 1 s and are retried
 * `retries` times, so that a re-check without a verdict ends within the test.
 */
function withShortCalls(retries: number): TestContext {
  return { ...context, config: { ...context.config, LLM_TIMEOUT_MS: 1000, LLM_MAX_RETRIES: retries } };
}

/** Returns the path of the file whose prompt a chat completion request of the fake Groq sent. */
function pathOfRequest(request: { body: unknown }): string {
  const { messages } = request.body as { messages: { content: string }[] };
  return pathInPrompt(messages.at(-1)!.content);
}

/** Returns the path of the first file whose prompt the fake Groq received, the re-check's file. */
const recheckPath = () => pathOfRequest(groqCompletions(groq)[0]!);

/**
 * Waits until all of the user's preview files are running, so that their calls wait for the
 * re-check, and 500 ms more for the calls to read the claimed re-check.
 */
async function waitForRunningFiles(userId: string): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    const [row] = await context.database.sql<{ running: number }[]>`
      SELECT count(*)::int AS running FROM patch_files f JOIN patch_requests r ON r.id = f.patch_request_id
      WHERE r.user_id = ${userId} AND f.status = 'running'`;
    if (row!.running === paths.length) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the preview files of user ${userId} were not all running within 10 s`);
}

/**
 * Runs a preview for a new user while another process has claimed the due re-check of the
 * platform Groq key, and calls `end` as that process once the preview's files wait for it.
 */
async function previewDuringOtherRecheck(end: () => Promise<unknown>) {
  await recordRejection(true);
  await context.db.update(platformKeyRejections).set({
    recheckAt: sql`now() + interval '10 minutes'`,
    recheckStartedAt: sql`now()`,
  });
  const user = await newUser();
  const ending = (async () => {
    await waitForRunningFiles(user.id);
    await end();
  })();
  const [result] = await Promise.all([previewForUser(context, { runId, userId: user.id }), ending]);
  return result;
}

describe('platform key re-check without a verdict', () => {
  it('lets waiting files call after a 500', async () => {
    await recordRejection(true);
    groq.enqueue({
      status: 500,
      body: groqErrorBody('Internal server error', 'internal_server_error'),
      delayMs: recheckDelayMs,
    });
    const logStart = context.logs.length;
    const user = await newUser();

    const result = await previewForUser(context, { runId, userId: user.id }, withShortCalls(0));

    const recheckFile = recheckPath();
    const waiting = paths.filter((path) => path !== recheckFile);
    expect(waiting).toHaveLength(5);
    const byPath = new Map(result.files.map((file) => [file.path, file]));
    expect(byPath.get(recheckFile)!.status).toBe('failed');
    // The re-check's own file fails with the outage, as any call after a 500 without retries.
    expect(byPath.get(recheckFile)!.error).toContain('HTTP 500');
    expect(byPath.get(recheckFile)!.error).toContain('Internal server error');
    for (const path of waiting) {
      expect([path, byPath.get(path)!.status, byPath.get(path)!.error]).toEqual([path, 'ready', null]);
    }
    expect(groqCompletions(groq).map((request) => request.reply?.status)).toEqual([500, 200, 200, 200, 200, 200]);
    // The waiting files' accepted requests show that the provider accepts the key again.
    expect(await context.db.select().from(platformKeyRejections)).toEqual([]);
    expect(context.logs.slice(logStart).filter((line) => line.event === 'platform_key.recovered')).toHaveLength(1);
    const charged = result.ledger.reduce((sum, event) => sum + event.chargedTokens, 0);
    expect(charged).toBeGreaterThan(0);
    expect(await readAllowance(context, user.id)).toEqual({ used: charged, reserved: 0 });
  });

  it('lets waiting files call after a timeout', async () => {
    await recordRejection(true);
    // The fake replies to the re-check after its 1 s timeout, and to the other requests at once.
    groq.setHandler((request) => {
      arrivals.push(performance.now());
      const text = fixes[pathInPrompt(request.messages.at(-1)!.content)]!;
      return arrivals.length === 1 ? { text, delayMs: 2500 } : { text };
    });
    const user = await newUser();

    const result = await previewForUser(context, { runId, userId: user.id }, withShortCalls(0));

    const recheckFile = recheckPath();
    const byPath = new Map(result.files.map((file) => [file.path, file]));
    expect(byPath.get(recheckFile)!.status).toBe('failed');
    expect(byPath.get(recheckFile)!.error).toContain('did not respond within 1000 ms');
    const waiting = paths.filter((path) => path !== recheckFile);
    for (const path of waiting) {
      expect([path, byPath.get(path)!.status, byPath.get(path)!.error]).toEqual([path, 'ready', null]);
    }
    expect(groqCompletions(groq)).toHaveLength(6);
    expect(await context.db.select().from(platformKeyRejections)).toEqual([]);
  });

  it('ends the wait after one request timeout', async () => {
    await recordRejection(true);
    // The re-check is rate-limited and retries after 3 s, longer than the 1 s timeout of a request.
    groq.enqueue({
      status: 429,
      headers: { 'retry-after': '3' },
      body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded'),
    });
    const user = await newUser();

    const result = await previewForUser(context, { runId, userId: user.id }, withShortCalls(1));

    expect(result.files.map((file) => [file.path, file.status, file.error])).toEqual(
      paths.map((path) => [path, 'ready', null]),
    );
    const requests = groqCompletions(groq);
    expect(requests.map((request) => request.reply?.status)).toEqual([429, 200, 200, 200, 200, 200, 200]);
    // arrivals counts the requests that reached the handler, so the 429 is not among them.
    expect(arrivals).toHaveLength(6);
    const retryAt = Math.max(...arrivals);
    const ownCalls = arrivals.filter((time) => time < retryAt);
    expect(ownCalls).toHaveLength(5);
    // The five waiting files sent their requests about 1 s into the wait, not after the retry.
    expect(pathOfRequest(requests.at(-1)!)).toBe(recheckPath());
    expect(retryAt - Math.max(...ownCalls)).toBeGreaterThan(1000);
  });

  it('lets files call after another process ends its re-check', async () => {
    const result = await previewDuringOtherRecheck(() => endPlatformKeyRecheck(context.db, { provider: 'groq', keyHash }));

    expect(result.files.map((file) => [file.path, file.status, file.error])).toEqual(
      paths.map((path) => [path, 'ready', null]),
    );
    expect(groqCompletions(groq)).toHaveLength(6);
    expect(await context.db.select().from(platformKeyRejections)).toEqual([]);
  });

  it('skips the key after another process rejects it again', async () => {
    const result = await previewDuringOtherRecheck(() =>
      recordPlatformKeyRejection(context.db, { provider: 'groq', keyHash }, 401, 600),
    );

    expect(result.outcome.status).toBe('failed');
    for (const file of result.files) expect(file.error).toBe(platformKeyRejectedReason('groq', 401));
    expect(groqCompletions(groq)).toHaveLength(0);
  });
});
