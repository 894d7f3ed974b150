import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DiffThreadError, DiffWorker } from '../../src/analysis/diff-worker.ts';
import { estimateLeastCallTokens, minimumCallTokens, runPreview } from '../../src/autofix/preview.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import { maxDiffEditLines } from '../../src/autofix/preview-diff.ts';
import { estimateFileCalls, loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { groupFindingsByFile } from '../../src/autofix/preview-files.ts';
import { splitPreviewTokens } from '../../src/autofix/visible-patch-requests.ts';
import {
  findings,
  patchFiles,
  patchRequests,
  tokenEvents,
  users,
} from '../../src/db/schema/index.ts';
import type { FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { groqErrorBody, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { answerFixPrompt } from '../../src/demo/scenario.ts';
import type { TestContext } from '../helpers/context.ts';
import { failingDiffWorker } from '../helpers/failing-diff-worker.ts';
import { closedPortUrl } from '../helpers/model-clients.ts';
import {
  answerWithFixedFiles,
  createPatchRequestForRun,
  createPreviewTestContext,
  insertConsoleLogFindings,
  pathInPrompt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const files = {
  'src/a.ts': "export const a = 1;\nconsole.log('a', a);\n",
  'src/b.ts': "export const b = 2;\nconsole.log('b', b);\n",
};
const fixed: Record<string, string> = {
  'src/a.ts': 'export const a = 1;\n',
  'src/b.ts': 'export const b = 2;\n',
};

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let gemini: FakeGemini;
let runId: string;

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: files,
    groqApiKey: 'gsk_platform_preview_test',
    geminiApiKey: 'AIzaPlatformPreviewTest',
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

async function newPatchRequest(user: { tokenLimit?: number; tokensUsed?: number; plan?: 'free' | 'pro' }) {
  const [owner] = await context.db
    .insert(users)
    .values({ login: `user-${Math.random().toString(36).slice(2, 9)}`, ...user })
    .returning();
  const patchRequestId = await createPatchRequestForRun(context, runId, owner!.id);
  return { userId: owner!.id, patchRequestId };
}

async function filesOf(patchRequestId: string) {
  return context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .orderBy(patchFiles.path);
}

describe('runPreview', () => {
  it('fails at once when the allowance is spent', async () => {
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 1000, tokensUsed: 990 });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('failed');
    const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('failed');
    expect(request!.error).toContain('Free plan allows 1000 tokens per period, 990 are used');
    // The smallest file's estimate without its content, since the run recorded no sizes.
    const rows = await context.db.select().from(findings).where(eq(findings.runId, runId));
    const calls = estimateFileCalls(rows);
    expect(calls).toHaveLength(2);
    const cheapest = calls.reduce((least, call) => (call.tokens < least.tokens ? call : least));
    expect(cheapest.tokens).toBeGreaterThan(minimumCallTokens);
    expect(request!.error).toContain(
      `so 10 remain but the cheapest of this preview's 2 model calls, for ${cheapest.path}, needs ` +
        `a minimum reservation of at least ${cheapest.tokens} tokens, its prompt estimate plus the ` +
        'least output cap that can hold the file.',
    );
    expect(request!.error).toContain('Upgrade to the Pro plan');
    // No file is left pending: each carries the reason, and the request counts them done.
    const files = await filesOf(patchRequestId);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      expect(file.status).toBe('failed');
      expect(file.error).toBe(request!.error);
    }
    expect(request!.filesDone).toBe(files.length);
    expect(request!.error).toContain('add your own Groq or Gemini key');
    expect(groq.requests).toHaveLength(0);
    expect(gemini.requests).toHaveLength(0);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(990);
    expect(user!.tokensReserved).toBe(0);
  });

  it('names the minimum reservation of a file left out', async () => {
    const rows = await context.db.select().from(findings).where(eq(findings.runId, runId));
    const byPath = groupFindingsByFile(rows);
    const leastCall = (path: keyof typeof files) =>
      estimateLeastCallTokens({ path, findings: byPath.get(path)!, fileBytes: Buffer.byteLength(files[path]) });
    // src/a.ts fits, and what its call leaves is less than the call of src/b.ts needs.
    const { patchRequestId } = await newPatchRequest({ tokenLimit: leastCall('src/a.ts') + 100 });

    await runPreview(context, patchRequestId, 0, context.logger);

    const stored = await filesOf(patchRequestId);
    expect(stored.map((file) => [file.path, file.status])).toEqual([
      ['src/a.ts', 'ready'],
      ['src/b.ts', 'failed'],
    ]);
    expect(stored[1]!.error).toContain(
      `but the model call for src/b.ts needs a minimum reservation of about ${leastCall('src/b.ts')} ` +
        'tokens, its prompt estimate plus the least output cap that can hold the file.',
    );
  });

  it('previews within the free plan, trimming to what is left', async () => {
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 1000 });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    // The files run one at a time, so the second gets what the first left.
    const stored = await filesOf(patchRequestId);
    const ready = stored.filter((file) => file.status === 'ready');
    const failed = stored.filter((file) => file.status === 'failed');
    expect(ready.length).toBeGreaterThanOrEqual(1);
    for (const file of failed) {
      expect(file.error).toContain('Not enough token allowance left');
      expect(file.error).toContain('0 are reserved by calls in progress');
    }
    expect(outcome.status).toBe(failed.length > 0 ? 'partially_ready' : 'ready');
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBeGreaterThan(0);
    expect(user!.tokensUsed).toBeLessThanOrEqual(1000);
    expect(user!.tokensReserved).toBe(0);
  });

  it('uses Gemini when Groq answers 429', async () => {
    groq.enqueue(
      { status: 429, headers: { 'retry-after': '3600' }, body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded') },
      { status: 429, headers: { 'retry-after': '3600' }, body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded') },
    );
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    const stored = await filesOf(patchRequestId);
    expect(stored.map((file) => [file.path, file.status, file.provider])).toEqual([
      ['src/a.ts', 'ready', 'gemini'],
      ['src/b.ts', 'ready', 'gemini'],
    ]);
    expect(stored.map((file) => file.proposedText)).toEqual([fixed['src/a.ts'], fixed['src/b.ts']]);
    const geminiCalls = gemini.requests.filter((request) => request.path.includes(':generateContent'));
    expect(geminiCalls).toHaveLength(2);
    const reported = geminiCalls.reduce((sum, request) => sum + request.reply!.usage!.totalTokenCount, 0);

    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger.map((event) => event.provider)).toEqual(['gemini', 'gemini']);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(reported);
    expect(user!.tokensReserved).toBe(0);
  });

  it('uses Gemini when Groq sends no completion', async () => {
    groq.enqueue({ status: 200, body: {} }, { status: 200, body: { choices: [{ message: null }] } });
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    const stored = await filesOf(patchRequestId);
    expect(stored.map((file) => [file.path, file.status, file.provider])).toEqual([
      ['src/a.ts', 'ready', 'gemini'],
      ['src/b.ts', 'ready', 'gemini'],
    ]);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensReserved).toBe(0);
  });

  it('sends findings as compact lines without ids', async () => {
    // The demo's fake model fixes the lines that the findings block names.
    groq.setHandler((request) => answerFixPrompt(request.messages.at(-1)!.content));
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    const completions = groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    const userMessages = completions
      .map((request) => (request.body as { messages: { content: string }[] }).messages.at(-1)!.content)
      .sort();
    const findingLine = '{"ruleId":"debug/console-log","line":2,"message":"Remove the console.log call."}\n';
    expect(userMessages).toEqual(
      Object.entries(files).map(
        ([path, text]) =>
          `<findings>\n${findingLine}</findings>\n\n<file path="${path}" language="TypeScript">\n${text}\n</file>`,
      ),
    );
    const ids = await context.db.select({ id: findings.id }).from(findings).where(eq(findings.runId, runId));
    expect(ids).toHaveLength(2);
    for (const message of userMessages) {
      for (const { id } of ids) expect(message).not.toContain(id);
    }
    const stored = await filesOf(patchRequestId);
    expect(stored.map((file) => [file.path, file.status, file.proposedText])).toEqual([
      ['src/a.ts', 'ready', fixed['src/a.ts']],
      ['src/b.ts', 'ready', fixed['src/b.ts']],
    ]);
  });

  it('names the base URL settings when no provider connects', async () => {
    const { url, port } = await closedPortUrl();
    const unreachable = {
      ...context,
      config: { ...context.config, GROQ_BASE_URL: url, GEMINI_BASE_URL: url },
    };
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(unreachable, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('failed');
    const advice = 'sets this address, so the operator should check that it is right and that the server it names is running.';
    const expected =
      'Every model provider failed. ' +
      `Groq (unavailable): Could not connect to Groq at ${url} (connect ECONNREFUSED 127.0.0.1:${port}). GROQ_BASE_URL ${advice} ` +
      `Gemini (unavailable): Could not connect to Gemini at ${url} (connect ECONNREFUSED 127.0.0.1:${port}). GEMINI_BASE_URL ${advice}`;
    const stored = await filesOf(patchRequestId);
    expect(stored.map((file) => file.status)).toEqual(['failed', 'failed']);
    expect(stored.map((file) => file.error)).toEqual([expected, expected]);
    expect(groq.requests).toHaveLength(0);
    expect(gemini.requests).toHaveLength(0);
  });

  it('fails only the file whose answer was cut off', async () => {
    groq.setHandler((request) => {
      const path = pathInPrompt(request.messages.at(-1)!.content);
      return path === 'src/b.ts'
        ? { text: 'export const b', finishReason: 'length' }
        : { text: fixed[path]! };
    });
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('partially_ready');
    const stored = await filesOf(patchRequestId);
    expect(stored[0]).toMatchObject({ path: 'src/a.ts', status: 'ready', error: null });
    expect(stored[1]).toMatchObject({ path: 'src/b.ts', status: 'failed', proposedText: null, diff: null });
    expect(stored[1]!.error).toMatch(/cut off|truncated|output limit/i);
    expect(gemini.requests).toHaveLength(0);

    // The cut-off output still cost tokens, so it is billed.
    const completions = groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    const reported = completions.reduce((sum, request) => sum + request.reply!.usage!.total_tokens, 0);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(reported);
    const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('partially_ready');
    expect(request!.totalTokens).toBe(reported);
  });

  it('fails the file whose output has NUL', async () => {
    groq.setHandler((request) => {
      const path = pathInPrompt(request.messages.at(-1)!.content);
      return { text: path === 'src/b.ts' ? 'export const b\0= 2;\n' : fixed[path]! };
    });
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('partially_ready');
    const stored = await filesOf(patchRequestId);
    expect(stored[0]).toMatchObject({ path: 'src/a.ts', status: 'ready', error: null });
    expect(stored[1]).toMatchObject({ path: 'src/b.ts', status: 'failed', proposedText: null });
    expect(stored[1]!.error).toContain('NUL character (U+0000)');

    // Each file cost one call, and each call is billed once.
    const completions = groq.requests.filter((request) =>
      request.path.endsWith('/chat/completions'),
    );
    expect(completions).toHaveLength(2);
    const reported = completions.reduce(
      (sum, request) => sum + request.reply!.usage!.total_tokens,
      0,
    );
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(reported);
    expect(user!.tokensReserved).toBe(0);
  });

  it('fails Groq output with invalid UTF-8', async () => {
    // The fake sends the two bytes of "é" as the single byte 0xFF, which groq-sdk decodes to U+FFFD.
    groq.setHandler((request) => {
      const path = pathInPrompt(request.messages.at(-1)!.content);
      return path === 'src/b.ts' ? { text: "export const b = 'café';\n", invalidUtf8: 'é' } : { text: fixed[path]! };
    });
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('partially_ready');
    const stored = await filesOf(patchRequestId);
    expect(stored[0]).toMatchObject({ path: 'src/a.ts', status: 'ready', error: null, proposedText: fixed['src/a.ts'] });
    expect(stored[1]).toMatchObject({ path: 'src/b.ts', status: 'failed', proposedText: null, diff: null, provider: 'groq' });
    expect(stored[1]!.error).toBe(
      'The model output for src/b.ts contains 1 replacement character (U+FFFD) that the file ' +
        "does not have. U+FFFD marks bytes that were not valid UTF-8 in the provider's " +
        'response, so the output was discarded. Regenerate this file.',
    );

    // The discarded output cost tokens, so it is billed like any other failed output.
    const completions = groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    expect(completions).toHaveLength(2);
    const reported = completions.reduce((sum, request) => sum + request.reply!.usage!.total_tokens, 0);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(reported);
    expect(user!.tokensReserved).toBe(0);
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger.map((event) => event.path).sort()).toEqual(['src/a.ts', 'src/b.ts']);
    expect(gemini.requests).toHaveLength(0);
  });

  it('fails Gemini output with invalid UTF-8', async () => {
    const rateLimited = {
      status: 429,
      headers: { 'retry-after': '3600' },
      body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded'),
    };
    groq.enqueue(rateLimited, rateLimited);
    gemini.setHandler((request) => {
      const path = pathInPrompt(request.userText);
      return path === 'src/b.ts'
        ? { text: "export const b = 'café';\n// señal\n", invalidUtf8: 'é' }
        : { text: fixed[path]! };
    });
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('partially_ready');
    const stored = await filesOf(patchRequestId);
    expect(stored[0]).toMatchObject({ path: 'src/a.ts', status: 'ready', provider: 'gemini', proposedText: fixed['src/a.ts'] });
    expect(stored[1]).toMatchObject({ path: 'src/b.ts', status: 'failed', proposedText: null, provider: 'gemini' });
    expect(stored[1]!.error).toContain('The model output for src/b.ts contains 1 replacement character (U+FFFD)');
    expect(stored[1]!.error).toContain('Regenerate this file.');

    const geminiCalls = gemini.requests.filter((request) => request.path.includes(':generateContent'));
    expect(geminiCalls).toHaveLength(2);
    const reported = geminiCalls.reduce((sum, request) => sum + request.reply!.usage!.totalTokenCount, 0);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(reported);
    expect(user!.tokensReserved).toBe(0);
  });

  it('fails output with a lone surrogate', async () => {
    // JSON can escape half of a surrogate pair (\ud83d), which is valid JSON but no character,
    // and PostgreSQL would store it as U+FFFD.
    groq.setHandler((request) => {
      const path = pathInPrompt(request.messages.at(-1)!.content);
      return path === 'src/b.ts' ? { text: "export const b = '\uD83D';\n" } : { text: fixed[path]! };
    });
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('partially_ready');
    const stored = await filesOf(patchRequestId);
    expect(stored[0]).toMatchObject({ path: 'src/a.ts', status: 'ready', proposedText: fixed['src/a.ts'] });
    expect(stored[1]).toMatchObject({ path: 'src/b.ts', status: 'failed', proposedText: null, provider: 'groq' });
    expect(stored[1]!.error).toBe(
      'The model output for src/b.ts contains 1 lone UTF-16 surrogate (U+D83D), half of a ' +
        'character that cannot be stored as UTF-8, so the output was discarded. Regenerate this file.',
    );
  });

  it('fails a file rewritten past the diff limit', async () => {
    // Every line differs from the two-line original, so the diff needs more edits than allowed.
    const rewrite = Array.from(
      { length: maxDiffEditLines },
      (_, index) => `const v${index} = ${index};`,
    );
    groq.setHandler((request) => {
      const path = pathInPrompt(request.messages.at(-1)!.content);
      return { text: path === 'src/b.ts' ? `${rewrite.join('\n')}\n` : fixed[path]! };
    });
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('partially_ready');
    const stored = await filesOf(patchRequestId);
    expect(stored[0]).toMatchObject({ path: 'src/a.ts', status: 'ready', error: null });
    expect(stored[1]).toMatchObject({
      path: 'src/b.ts',
      status: 'failed',
      proposedText: null,
      diff: null,
    });
    expect(stored[1]!.error).toBe(
      `The model's output adds and removes more than ${maxDiffEditLines} lines of src/b.ts ` +
        'together, which is a rewrite rather than a fix, so it was discarded. ' +
        'Request the fix again.',
    );
    expect(stored[1]!.originalText).toBe(files['src/b.ts']);
  });

  it('fails only the file whose diff thread crashes', async () => {
    const diffWorker = failingDiffWorker('crash');
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    let outcome;
    try {
      outcome = await runPreview(context, patchRequestId, 0, context.logger, { diffWorker });
    } finally {
      await diffWorker.close();
    }

    expect(outcome.status).toBe('partially_ready');
    const stored = await filesOf(patchRequestId);
    const failed = stored.filter((file) => file.status === 'failed');
    const ready = stored.filter((file) => file.status === 'ready');
    expect(failed).toHaveLength(1);
    expect(ready).toHaveLength(1);
    const failedPath = failed[0]!.path;
    expect(failed[0]).toMatchObject({ proposedText: null, diff: null });
    expect(failed[0]!.error).toBe(
      `The diff of the model's output for ${failedPath} failed because the diff thread stopped ` +
        '(the diff thread failed: the test thread crashed on purpose), so the output was ' +
        'discarded. Request the fix again.',
    );
    expect(failed[0]!.originalText).toBe(files[failedPath as keyof typeof files]);
    expect(ready[0]!.proposedText).toBe(fixed[ready[0]!.path]);
    expect(ready[0]!.diff).toContain(`+++ b/${ready[0]!.path}`);
  });

  it('stores paid file stopped mid-diff', async () => {
    const stop = new AbortController();
    const diffWorker = new DiffWorker();
    const buildPatch = diffWorker.structuredPatch.bind(diffWorker);
    const diffedPaths: string[] = [];
    vi.spyOn(diffWorker, 'structuredPatch').mockImplementation(async (request) => {
      diffedPaths.push(request.newFileName.slice('b/'.length));
      stop.abort();
      return buildPatch(request);
    });
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    let outcome;
    try {
      outcome = await runPreview(context, patchRequestId, 0, context.logger, {
        diffWorker,
        signal: stop.signal,
      });
    } finally {
      await diffWorker.close();
    }

    expect(outcome.status).toBe('skipped');
    expect(diffedPaths.length).toBeGreaterThan(0);
    const stored = await filesOf(patchRequestId);
    for (const path of diffedPaths) {
      const file = stored.find((candidate) => candidate.path === path);
      expect(file?.status, path).toBe('ready');
      expect(file?.proposedText, path).toBe(fixed[path]);
    }
  });

  it('counts tokens of a file stopped mid-diff', async () => {
    const stop = new AbortController();
    const diffWorker = new DiffWorker();
    // The stop comes while the paid output is diffed, and the diff then fails, so the file is
    // left for the retry.
    vi.spyOn(diffWorker, 'structuredPatch').mockImplementation(async () => {
      stop.abort();
      throw new DiffThreadError('the diff thread exited during the stop');
    });
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    try {
      await runPreview(context, patchRequestId, 0, context.logger, { diffWorker, signal: stop.signal });
    } finally {
      await diffWorker.close();
    }

    const stored = await filesOf(patchRequestId);
    const [ledger] = await context.db
      .select({ total: sql<number>`coalesce(sum(${tokenEvents.totalTokens}), 0)::int` })
      .from(tokenEvents)
      .where(eq(tokenEvents.patchRequestId, patchRequestId));
    const request = await requestOf(patchRequestId);
    const tokens = splitPreviewTokens(request, stored);
    expect(stored.some((file) => file.status === 'pending' || file.status === 'running')).toBe(true);
    expect(ledger!.total).toBeGreaterThan(0);
    expect(request.totalTokens).toBe(ledger!.total);
    expect(tokens.files + tokens.discarded).toBe(ledger!.total);
  });

  it('finishes files in flight before it raises', async () => {
    // src/a.ts is still with the model when reading src/b.ts fails.
    groq.setHandler((request) => {
      const path = pathInPrompt(request.messages.at(-1)!.content);
      return { text: fixed[path]!, delayMs: path === 'src/a.ts' ? 1000 : 0 };
    });
    setup.github.queueResponse({ method: 'GET', path: /\/contents\/src(\/|%2F)b\.ts/i, status: 422 });
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    await expect(runPreview(context, patchRequestId, 0, context.logger)).rejects.toMatchObject({
      status: 422,
    });

    // A file still running here would be called again by the retry while this attempt pays.
    const stored = await filesOf(patchRequestId);
    expect(stored[0]).toMatchObject({ path: 'src/a.ts', status: 'ready' });
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensReserved).toBe(0);
  });

  it('does not redo finished files when retried', async () => {
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });
    await runPreview(context, patchRequestId, 0, context.logger);
    await context.db
      .update(patchRequests)
      .set({ status: 'running' })
      .where(eq(patchRequests.id, patchRequestId));
    await context.db
      .update(patchFiles)
      .set({ status: 'pending' })
      .where(and(eq(patchFiles.patchRequestId, patchRequestId), eq(patchFiles.path, 'src/b.ts')));
    groq.reset();
    groq.setHandler((request) => ({ text: fixed[pathInPrompt(request.messages.at(-1)!.content)]! }));

    const outcome = await runPreview(context, patchRequestId, 1, context.logger);
    expect(outcome.status).toBe('ready');
    const completions = groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    expect(completions).toHaveLength(1);
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger).toHaveLength(3);
    expect(new Set(ledger.map((event) => event.idempotencyKey)).size).toBe(3);
  });
});

const unchanged = files as Record<string, string>;

async function requestOf(patchRequestId: string) {
  const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
  return request!;
}

function completions(): number {
  return groq.requests.filter((request) => request.path.endsWith('/chat/completions')).length;
}

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the model calls');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Makes the first two model calls (attempt 0) reply with `first` after 1.5 s and later calls
 * (attempt 1) reply with `second` at once.
 */
function answerAttempts(first: Record<string, string>, second: Record<string, string>): void {
  groq.reset();
  let calls = 0;
  groq.setHandler((request) => {
    calls++;
    const path = pathInPrompt(request.messages.at(-1)!.content);
    return calls <= 2 ? { text: first[path]!, delayMs: 1500 } : { text: second[path]! };
  });
}

/** Runs attempt 0 until both its calls wait for the model, then attempt 1 to its end. */
async function overlapAttempts(patchRequestId: string) {
  const late = runPreview(context, patchRequestId, 0, context.logger);
  await waitFor(() => completions() === 2);
  const retry = await runPreview(context, patchRequestId, 1, context.logger);
  return { late, retry };
}

// Two attempts of one preview job overlap when pg-boss retries a job that ran past its
// PREVIEW_JOB_TIMEOUT_SECONDS while its first handler still waits for the model. Attempt 0
// then finishes the calls it started after attempt 1 has called the model for the same files.
describe('overlapping preview attempts', () => {
  it('keep a late ready file and its status', async () => {
    answerAttempts(fixed, unchanged);
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    const { late, retry } = await overlapAttempts(patchRequestId);
    expect(retry.status).toBe('failed');
    await late;

    // Attempt 0's responses were paid and are ready, so the preview can be applied.
    const stored = await filesOf(patchRequestId);
    for (const file of stored) {
      expect(file.status, file.path).toBe('ready');
      expect(file.proposedText, file.path).toBe(fixed[file.path]);
    }
    const request = await requestOf(patchRequestId);
    expect(request.status).toBe('ready');
    expect(request.error).toBeNull();
    expect(request.filesDone).toBe(2);

    // Both attempts' calls were paid, and the preview's total counts them all. The files show
    // attempt 0's results, so attempt 1's tokens are the discarded rest.
    const [ledger] = await context.db
      .select({ total: sql<number>`sum(${tokenEvents.totalTokens})::int`, calls: sql<number>`count(*)::int` })
      .from(tokenEvents)
      .where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger!.calls).toBe(4);
    expect(request.totalTokens).toBe(ledger!.total);
    const tokens = splitPreviewTokens(request, stored);
    expect(tokens.files).toBe(stored[0]!.totalTokens + stored[1]!.totalTokens);
    expect(tokens.files).toBeGreaterThan(0);
    expect(tokens.discarded).toBe(retry.tokens);
    expect(tokens.discarded).toBeGreaterThan(0);
    expect(tokens.files + tokens.discarded).toBe(request.totalTokens);
  });

  it('keep a ready file when the late attempt fails', async () => {
    answerAttempts(unchanged, fixed);
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    const { late, retry } = await overlapAttempts(patchRequestId);
    expect(retry.status).toBe('ready');
    await late;

    const stored = await filesOf(patchRequestId);
    for (const file of stored) {
      expect(file.status, file.path).toBe('ready');
      expect(file.error, file.path).toBeNull();
      expect(file.proposedText, file.path).toBe(fixed[file.path]);
    }
    const request = await requestOf(patchRequestId);
    expect(request.status).toBe('ready');
  });

  it('leave files alone while an apply waits', async () => {
    answerAttempts(fixed, { 'src/a.ts': unchanged['src/a.ts']!, 'src/b.ts': fixed['src/b.ts']! });
    const { patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    const { late, retry } = await overlapAttempts(patchRequestId);
    expect(retry.status).toBe('partially_ready');
    // An apply of the ready file that GitHub rate-limited waits in a job, as the API leaves it.
    await context.db
      .update(patchRequests)
      .set({ applyJobId: randomUUID(), applyRateLimitedUntil: new Date(Date.now() + 60_000) })
      .where(eq(patchRequests.id, patchRequestId));
    await late;

    // The waiting job applies what the user saw, not a file that turned ready meanwhile.
    const [fileA, fileB] = await filesOf(patchRequestId);
    expect(fileA!.status).toBe('failed');
    expect(fileA!.proposedText).toBeNull();
    expect(fileB!.status).toBe('ready');
    const request = await requestOf(patchRequestId);
    expect(request.status).toBe('partially_ready');
  });

  it('leave a regenerated file to its new job', async () => {
    answerAttempts(unchanged, fixed);
    const { userId, patchRequestId } = await newPatchRequest({ tokenLimit: 100_000, plan: 'pro' });

    const { late, retry } = await overlapAttempts(patchRequestId);
    expect(retry.status).toBe('ready');
    const [fileA] = await filesOf(patchRequestId);
    const regenerated = await regeneratePatchFile(context.db, context.boss, {
      userId,
      patchRequestId,
      fileId: fileA!.id,
      payment: await loadPreviewPayment(context, userId),
    });
    expect(regenerated.ok).toBe(true);
    await late;

    // The late response is for generation 0, and the regeneration's job has not run yet.
    const [stored] = await filesOf(patchRequestId);
    expect(stored!.generation).toBe(1);
    expect(stored!.status).toBe('pending');
    expect(stored!.proposedText).toBeNull();
    const request = await requestOf(patchRequestId);
    expect(request.status).toBe('running');
  });
});
