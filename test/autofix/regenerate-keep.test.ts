// A regeneration keeps the file's ready result until it stores its own. Whatever ends it
// without a new result puts that result back with the reason, and late attempts of its job
// can undo neither the restore nor a new result.
import { and, eq, like, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { previewVersion } from '../../src/apply/preview-version.ts';
import { cancelledRegenerationError } from '../../src/autofix/kept-result.ts';
import { runPreview } from '../../src/autofix/preview.ts';
import { loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import { splitPreviewTokens } from '../../src/autofix/visible-patch-requests.ts';
import {
  installations,
  patchFiles,
  patchRequests,
  prRuns,
  tokenEvents,
  users,
} from '../../src/db/schema/index.ts';
import { groqErrorBody, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { cleanUpInterruptedJobs } from '../../src/jobs/recover-jobs.ts';
import { cancelPatchRequestsOfRuns } from '../../src/runs/cancel-run-work.ts';
import type { TestContext } from '../helpers/context.ts';
import {
  answerWithFixedFiles,
  consoleLogFiles,
  consoleLogFixes,
  createPatchRequestForRun,
  createPreviewTestContext,
  insertConsoleLogFindings,
  installationId,
  takeAsLastAttempt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';
import { waitFor } from '../helpers/process.ts';

const files = consoleLogFiles;
const firstFix = consoleLogFixes;
const newFixOfA = 'export const a = 1; // fixed again\n';
/** Groq's reply to a call during an outage, and the file error that it becomes. */
const outage = { status: 503, body: groqErrorBody('Service unavailable', 'internal_server_error') };
const outageError = 'Groq is unavailable (HTTP 503): Service unavailable. Try again later.';

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let runId: string;

beforeAll(async () => {
  setup = await createPreviewTestContext({ head: files, groqApiKey: 'gsk_platform_regenerate_keep_test' });
  ({ context, groq, runId } = setup);
  await insertConsoleLogFindings(context, runId, Object.keys(files));
});

afterAll(async () => {
  await setup?.close();
});

beforeEach(() => {
  answerWithFixedFiles(firstFix, groq, setup.gemini);
});

function completions() {
  return groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
}

async function fileRows(patchRequestId: string) {
  return context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .orderBy(patchFiles.path);
}

async function requestRow(patchRequestId: string) {
  const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
  return request!;
}

/** Sums the ledger's tokens of the calls of `patchRequestId` whose idempotency key contains `part`. */
async function ledgerTokens(patchRequestId: string, part: string): Promise<number> {
  const [row] = await context.db
    .select({ total: sql<number>`coalesce(sum(${tokenEvents.totalTokens}), 0)::int` })
    .from(tokenEvents)
    .where(and(eq(tokenEvents.patchRequestId, patchRequestId), like(tokenEvents.idempotencyKey, `%${part}%`)));
  return row!.total;
}

/**
 * Creates a pro user's preview of both files, lets it finish ready and regenerates src/a.ts,
 * after storing `keyNotice` with its result when given. Returns the files and the version as
 * they were before the regeneration.
 */
async function regeneratedPreview(keyNotice?: string) {
  const [user] = await context.db
    .insert(users)
    .values({ login: `keeper-${Math.random().toString(36).slice(2, 9)}`, plan: 'pro', tokenLimit: 100_000 })
    .returning();
  await context.db.update(installations).set({ userId: user!.id }).where(eq(installations.id, installationId));
  const patchRequestId = await createPatchRequestForRun(context, runId, user!.id);
  const outcome = await runPreview(context, patchRequestId, 0, context.logger);
  if (outcome.status !== 'ready') throw new Error(`first preview ended ${outcome.status}`);

  if (keyNotice !== undefined) {
    await context.db
      .update(patchFiles)
      .set({ keyNotice })
      .where(and(eq(patchFiles.patchRequestId, patchRequestId), eq(patchFiles.path, 'src/a.ts')));
  }
  const [fileA, fileB] = await fileRows(patchRequestId);
  const before = { fileA: fileA!, fileB: fileB!, version: previewVersion([fileA!, fileB!]) };
  const regenerated = await regeneratePatchFile(context.db, context.boss, {
    userId: user!.id,
    patchRequestId,
    fileId: fileA!.id,
    payment: await loadPreviewPayment(context, user!.id),
  });
  expect(regenerated).toMatchObject({ ok: true, generation: 1 });
  groq.reset();
  return { userId: user!.id, patchRequestId, before };
}

type Before = Awaited<ReturnType<typeof regeneratedPreview>>['before'];

/** Checks that src/a.ts shows its result from before the regeneration, with `error` as the reason. */
async function expectEarlierResult(patchRequestId: string, before: Before, error: string) {
  const [fileA, fileB] = await fileRows(patchRequestId);
  expect(fileA!.status).toBe('ready');
  expect(fileA!.error).toBeNull();
  expect(fileA!.regenerationError).toBe(error);
  expect(fileA!.diff).toBe(before.fileA.diff);
  expect(fileA!.originalText).toBe(before.fileA.originalText);
  expect(fileA!.proposedText).toBe(firstFix['src/a.ts']);
  expect(fileA!.baseBlobSha).toBe(before.fileA.baseBlobSha);
  expect(fileA!.provider).toBe(before.fileA.provider);
  expect(fileA!.model).toBe(before.fileA.model);
  expect(fileA!.totalTokens).toBe(before.fileA.totalTokens);
  expect(fileA!.keptResult).toBeNull();
  // The generation stays raised for the next regeneration's idempotency keys, and the
  // version names the earlier result again, so an Apply form that shows it stays valid.
  expect(fileA!.generation).toBe(1);
  expect(fileA!.restoredGeneration).toBe(0);
  expect(previewVersion([fileA!, fileB!])).toBe(before.version);
  expect(fileB).toEqual(before.fileB);
  return { fileA: fileA!, fileB: fileB! };
}

describe('failed regeneration', () => {
  it('keeps the earlier diff on a provider outage', async () => {
    const { patchRequestId, before } = await regeneratedPreview();
    groq.enqueue(outage);

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    expect(completions()).toHaveLength(1);
    await expectEarlierResult(patchRequestId, before, outageError);
    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('ready');
    expect(request.error).toBeNull();
    expect(request.filesDone).toBe(2);
    expect(request.completedAt).toBeInstanceOf(Date);
    const log = context.logs.findLast((line) => line.event === 'preview.file');
    expect(log?.path).toBe('src/a.ts');
    expect(log?.restoredEarlierResult).toBe(true);
    expect(log?.msg).toBe('file regeneration failed; the file got its earlier result back');
  });

  it('keeps the key notice of the earlier diff', async () => {
    const notice = 'Groq rejected your saved Groq key (HTTP 401), so this file used your own Gemini key.';
    const { patchRequestId, before } = await regeneratedPreview(notice);
    const [regenerating] = await fileRows(patchRequestId);
    expect(regenerating!.keyNotice).toBeNull();
    expect(regenerating!.keptResult?.keyNotice).toBe(notice);
    groq.enqueue(outage);

    await runPreview(context, patchRequestId, 0, context.logger);

    const { fileA } = await expectEarlierResult(patchRequestId, before, outageError);
    expect(fileA.keyNotice).toBe(notice);
  });

  it('counts a charged failed call as discarded', async () => {
    const { patchRequestId, before } = await regeneratedPreview();
    // The fake Groq returns the file unchanged, which is charged and then rejected.
    groq.setHandler(() => ({ text: files['src/a.ts'] }));

    await runPreview(context, patchRequestId, 0, context.logger);

    const { fileA, fileB } = await expectEarlierResult(
      patchRequestId,
      before,
      'The model returned the file unchanged, so there is nothing to apply.',
    );
    const failedCall = await ledgerTokens(patchRequestId, 'generation-1');
    expect(failedCall).toBeGreaterThan(0);
    const request = await requestRow(patchRequestId);
    const tokens = splitPreviewTokens(request, [fileA, fileB]);
    expect(tokens.files).toBe(before.fileA.totalTokens + before.fileB.totalTokens);
    expect(tokens.discarded).toBe(failedCall);
    expect(tokens.total).toBe(tokens.files + failedCall);
  });

  it('keeps the earlier diff when no call can start', async () => {
    const { userId, patchRequestId, before } = await regeneratedPreview();
    // The allowance ran out between the click and the job.
    await context.db.update(users).set({ tokensUsed: 100_000 }).where(eq(users.id, userId));

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    expect(completions()).toHaveLength(0);
    const [fileA] = await fileRows(patchRequestId);
    expect(fileA!.regenerationError).toContain('Pro plan allows 100000 tokens per period, 100000 are used');
    await expectEarlierResult(patchRequestId, before, fileA!.regenerationError!);
    // The preview stays applicable, because both files are ready.
    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('ready');
    expect(request.error).toBeNull();
  });

  it('keeps the earlier diff after a stop on the last attempt', async () => {
    const { patchRequestId, before } = await regeneratedPreview();
    const job = await takeAsLastAttempt(context, patchRequestId);
    // The attempt had claimed the file when the service stopped, and pg-boss failed the job.
    await context.db
      .update(patchFiles)
      .set({ status: 'running' })
      .where(eq(patchFiles.id, before.fileA.id));
    await context.db.execute(sql`UPDATE pgboss.job SET state = 'failed' WHERE id = ${job.id}`);

    await cleanUpInterruptedJobs(context, [{ id: job.id, attempt: job.retryCount }]);

    await expectEarlierResult(patchRequestId, before, 'Preview failed: The service stopped while it ran.');
    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('ready');
    expect(request.completedAt).toBeInstanceOf(Date);
  });

  it('keeps the earlier diff when the preview is cancelled', async () => {
    const { patchRequestId, before } = await regeneratedPreview();

    const cancelled = await context.db.transaction((tx) =>
      cancelPatchRequestsOfRuns(tx, context.boss, [runId], 'The pull request was closed.'),
    );
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(cancelled).toEqual([patchRequestId]);
    expect(outcome.status).toBe('skipped');
    expect(completions()).toHaveLength(0);
    await expectEarlierResult(patchRequestId, before, cancelledRegenerationError);
    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('cancelled');
    expect(request.error).toBe('The pull request was closed.');
  });

  it('keeps the earlier diff when a push supersedes the run', async () => {
    const { patchRequestId, before } = await regeneratedPreview();
    await context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, runId));
    try {
      const outcome = await runPreview(context, patchRequestId, 0, context.logger);

      expect(outcome.status).toBe('cancelled');
    } finally {
      await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, runId));
    }
    expect(completions()).toHaveLength(0);
    await expectEarlierResult(patchRequestId, before, cancelledRegenerationError);
    expect((await requestRow(patchRequestId)).status).toBe('cancelled');
  });
});

describe('successful regeneration', () => {
  it('replaces the earlier diff', async () => {
    const { patchRequestId, before } = await regeneratedPreview();
    groq.setHandler(() => ({ text: newFixOfA }));

    await runPreview(context, patchRequestId, 0, context.logger);

    const [fileA, fileB] = await fileRows(patchRequestId);
    expect(fileA!.status).toBe('ready');
    expect(fileA!.proposedText).toBe(newFixOfA);
    expect(fileA!.diff).toContain('+export const a = 1; // fixed again');
    expect(fileA!.regenerationError).toBeNull();
    expect(fileA!.keptResult).toBeNull();
    expect(fileA!.restoredGeneration).toBeNull();
    expect(previewVersion([fileA!, fileB!])).not.toBe(before.version);
    // The earlier result's tokens are discarded now.
    const tokens = splitPreviewTokens(await requestRow(patchRequestId), [fileA!, fileB!]);
    expect(tokens.discarded).toBe(before.fileA.totalTokens);
  });
});

// Two attempts of the regeneration's job overlap when pg-boss retries the job after it ran past
// its time limit. Attempt 0's call returns after attempt 1 has finished the file.
describe('late attempt of a regeneration', () => {
  /** Starts attempt 0 until its call waits, then runs attempt 1 to its end. */
  async function overlapAttempts(patchRequestId: string) {
    const late = runPreview(context, patchRequestId, 0, context.logger);
    await waitFor(async () => completions().length === 1, {
      timeoutMs: 10_000,
      intervalMs: 20,
      describe: () => "attempt 0's model call",
    });
    const retry = await runPreview(context, patchRequestId, 1, context.logger);
    return { late, retry };
  }

  it('cannot undo a restored result', async () => {
    const { patchRequestId, before } = await regeneratedPreview();
    groq.enqueue({ text: newFixOfA, delayMs: 1500 }, outage);

    const { late, retry } = await overlapAttempts(patchRequestId);
    expect(retry.status).toBe('ready');
    await late;

    expect(completions()).toHaveLength(2);
    const { fileA, fileB } = await expectEarlierResult(patchRequestId, before, outageError);
    expect((await requestRow(patchRequestId)).status).toBe('ready');
    // The late call was charged, and no file shows its result.
    const lateCall = await ledgerTokens(patchRequestId, 'generation-1:attempt-0');
    expect(lateCall).toBeGreaterThan(0);
    const tokens = splitPreviewTokens(await requestRow(patchRequestId), [fileA, fileB]);
    expect(tokens.discarded).toBe(lateCall);
  });

  it('cannot undo a new result', async () => {
    const { patchRequestId, before } = await regeneratedPreview();
    groq.enqueue({ ...outage, delayMs: 1500 }, { text: newFixOfA });

    const { late, retry } = await overlapAttempts(patchRequestId);
    expect(retry.status).toBe('ready');
    await late;

    const [fileA] = await fileRows(patchRequestId);
    expect(fileA!.status).toBe('ready');
    expect(fileA!.proposedText).toBe(newFixOfA);
    expect(fileA!.diff).not.toBe(before.fileA.diff);
    expect(fileA!.regenerationError).toBeNull();
    expect(fileA!.restoredGeneration).toBeNull();
    expect((await requestRow(patchRequestId)).status).toBe('ready');
  });
});
