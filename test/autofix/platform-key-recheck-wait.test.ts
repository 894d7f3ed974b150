import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { platformKeyRejections, users } from '../../src/db/schema/index.ts';
import { invalidApiKeyBody, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { hashPlatformKey, platformKeyRejectedReason } from '../../src/keys/platform-key-rejections.ts';
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
    await recordRejection(true);
    // Another process claims the re-check and passes it while this process's preview runs.
    await context.db.update(platformKeyRejections).set({
      recheckAt: sql`now() + interval '10 minutes'`,
      recheckStartedAt: sql`now()`,
    });
    const user = await newUser();
    const passing = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 600));
      await context.db.delete(platformKeyRejections);
    })();
    const [result] = await Promise.all([previewForUser(context, { runId, userId: user.id }), passing]);

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
