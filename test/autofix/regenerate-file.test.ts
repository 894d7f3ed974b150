import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPreview } from '../../src/autofix/preview.ts';
import { loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import {
  findings,
  installations,
  patchFiles,
  patchRequests,
  prRuns,
  tokenEvents,
  users,
} from '../../src/db/schema/index.ts';
import { handlePreviewJob, previewQueue, type PreviewJobData } from '../../src/jobs/preview.ts';
import type { FakeGroq } from '../../src/demo/fakes/groq.ts';
import type { TestContext } from '../helpers/context.ts';
import {
  consoleLogFiles,
  consoleLogFixes,
  createPatchRequestForRun,
  createPreviewTestContext,
  insertConsoleLogFindings,
  installationId,
  pathInPrompt,
  takeAsLastAttempt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const files = consoleLogFiles;
const firstFix = consoleLogFixes;
const secondFixOfA = 'export const a = 1; // fixed again\n';

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let userId: string;
let patchRequestId: string;

function completions() {
  return groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
}

/** Regenerates a file with the payment that the dashboard loads for the user. */
async function regenerate(input: { userId: string; patchRequestId: string; fileId: string }) {
  const payment = await loadPreviewPayment(context, input.userId);
  return regeneratePatchFile(context.db, context.boss, { ...input, payment });
}

async function fileRows() {
  return context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .orderBy(patchFiles.path);
}

beforeAll(async () => {
  setup = await createPreviewTestContext({ head: files, groqApiKey: 'gsk_platform_regenerate_test' });
  ({ context, groq } = setup);

  const [user] = await context.db
    .insert(users)
    .values({ login: 'regenerator', plan: 'pro', tokenLimit: 100_000 })
    .returning();
  userId = user!.id;
  await context.db.update(installations).set({ userId }).where(eq(installations.id, installationId));
  await insertConsoleLogFindings(context, setup.runId, Object.keys(files));
  patchRequestId = await createPatchRequestForRun(context, setup.runId, userId);

  groq.setHandler((request) => ({ text: firstFix[pathInPrompt(request.messages.at(-1)!.content)]! }));
  const outcome = await runPreview(context, patchRequestId, 0, context.logger);
  if (outcome.status !== 'ready') throw new Error(`first preview ended ${outcome.status}`);
});

afterAll(async () => {
  await setup?.close();
});

describe('regeneratePatchFile', () => {
  it('returns not_found for another user', async () => {
    const [stranger] = await context.db.insert(users).values({ login: 'stranger' }).returning();
    const [file] = await fileRows();
    const result = await regenerate({
      userId: stranger!.id,
      patchRequestId,
      fileId: file!.id,
    });
    expect(result).toEqual({ ok: false, reason: 'not_found' });
  });

  it('calls the model again for that file only', async () => {
    const [fileA, fileB] = await fileRows();
    expect(completions()).toHaveLength(2);
    expect(await context.boss.getQueueSize(previewQueue)).toBe(1);

    const result = await regenerate({
      userId,
      patchRequestId,
      fileId: fileA!.id,
    });
    expect(result).toEqual({ ok: true, path: 'src/a.ts', generation: 1, cancelledApplyJobId: null });

    const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('running');
    expect(request!.completedAt).toBeNull();
    expect(request!.filesDone).toBe(1);
    const [resetA, keptB] = await fileRows();
    expect(resetA).toMatchObject({ status: 'pending', generation: 1, diff: null, proposedText: null, error: null });
    // The ready result waits in keptResult until the regeneration stores its own.
    expect(resetA!.keptResult).toEqual({
      generation: 0,
      baseBlobSha: fileA!.baseBlobSha,
      originalText: files['src/a.ts'],
      proposedText: firstFix['src/a.ts'],
      diff: fileA!.diff,
      provider: 'groq',
      model: fileA!.model,
      totalTokens: fileA!.totalTokens,
      keyNotice: null,
    });
    expect(keptB).toEqual(fileB);

    // One more preview job waits in the queue, sent with the reset.
    expect(await context.boss.getQueueSize(previewQueue)).toBe(2);
    const jobs = await context.boss.fetch<PreviewJobData>(previewQueue, { batchSize: 10 });
    expect(jobs.map((job) => job.data.patchRequestId)).toEqual([patchRequestId, patchRequestId]);

    groq.reset();
    groq.setHandler((request) => {
      const path = pathInPrompt(request.messages.at(-1)!.content);
      return { text: path === 'src/a.ts' ? secondFixOfA : firstFix[path]! };
    });
    const outcome = await runPreview(context, patchRequestId, 0, context.logger);
    expect(outcome.status).toBe('ready');

    const calls = completions();
    expect(calls).toHaveLength(1);
    const user = (calls[0]!.body as { messages: { role: string; content: string }[] }).messages.at(-1)!;
    expect(pathInPrompt(user.content)).toBe('src/a.ts');

    const [newA, sameB] = await fileRows();
    expect(newA).toMatchObject({ status: 'ready', generation: 1, proposedText: secondFixOfA });
    expect(newA!.diff).toContain('+export const a = 1; // fixed again');
    expect(newA!.keptResult).toBeNull();
    expect(newA!.restoredGeneration).toBeNull();
    expect(newA!.regenerationError).toBeNull();
    expect(sameB).toEqual(fileB);

    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger).toHaveLength(3);
    const regenerated = ledger.filter((event) => event.idempotencyKey.includes('generation-1'));
    expect(regenerated.map((event) => event.path)).toEqual(['src/a.ts']);

    const [finished] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(finished!.status).toBe('ready');
    expect(finished!.filesDone).toBe(2);
  });

  it('returns busy while the request is running', async () => {
    await context.db.update(patchRequests).set({ status: 'running' }).where(eq(patchRequests.id, patchRequestId));
    const [file] = await fileRows();
    const result = await regenerate({ userId, patchRequestId, fileId: file!.id });
    expect(result).toEqual({ ok: false, reason: 'busy', status: 'running' });
    await context.db.update(patchRequests).set({ status: 'ready' }).where(eq(patchRequests.id, patchRequestId));
  });

  it('refuses a file of an applied or applying preview', async () => {
    const [file] = await fileRows();
    const [before] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    for (const marks of [{ applyStartedAt: new Date() }, { appliedAt: new Date() }]) {
      await context.db
        .update(patchRequests)
        .set({ status: 'ready', appliedAt: null, applyStartedAt: null, ...marks })
        .where(eq(patchRequests.id, patchRequestId));
      const result = await regenerate({
        userId,
        patchRequestId,
        fileId: file!.id,
      });
      expect(result).toEqual({ ok: false, reason: 'applied', status: 'ready' });
    }
    const [after] = await fileRows();
    expect(after!.generation).toBe(file!.generation);
    await context.db
      .update(patchRequests)
      .set({ status: before!.status, appliedAt: null, applyStartedAt: null })
      .where(eq(patchRequests.id, patchRequestId));
  });

  it('confines a failed last attempt to its file', async () => {
    const [fileA, fileB] = await fileRows();
    expect(fileA!.status).toBe('ready');
    expect(fileB!.status).toBe('ready');
    const result = await regenerate({
      userId,
      patchRequestId,
      fileId: fileA!.id,
    });
    expect(result.ok).toBe(true);

    // Storing the new result of src/a.ts fails, so the job's last attempt raises.
    const thirdFixOfA = 'export const a = 1; // third fix\n';
    const rejectedWrite = 'writes of src/a.ts are disabled for this test';
    await context.db.execute(sql.raw(`
      CREATE FUNCTION reject_regenerated_file() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION '${rejectedWrite}'; END $$;
      CREATE TRIGGER reject_regenerated_file BEFORE UPDATE ON patch_files
        FOR EACH ROW WHEN (NEW.path = 'src/a.ts' AND NEW.proposed_text = '${thirdFixOfA}')
        EXECUTE FUNCTION reject_regenerated_file();
    `));
    groq.reset();
    groq.setHandler(() => ({ text: thirdFixOfA }));
    try {
      const job = await takeAsLastAttempt(context, patchRequestId);
      await expect(handlePreviewJob(context, job)).rejects.toThrow(rejectedWrite);
    } finally {
      await context.db.execute(sql.raw(`
        DROP TRIGGER reject_regenerated_file ON patch_files;
        DROP FUNCTION reject_regenerated_file();
      `));
    }

    // The failure puts the earlier result of src/a.ts back and names the error.
    const [restoredA, keptB] = await fileRows();
    expect(restoredA!.status).toBe('ready');
    expect(restoredA!.error).toBeNull();
    expect(restoredA!.regenerationError).toBe(`Preview failed: Database query failed: ${rejectedWrite}`);
    expect(restoredA!.proposedText).toBe(fileA!.proposedText);
    expect(restoredA!.diff).toBe(fileA!.diff);
    expect(restoredA!.generation).toBe(fileA!.generation + 1);
    expect(restoredA!.restoredGeneration).toBe(fileA!.generation);
    expect(restoredA!.keptResult).toBeNull();
    expect(keptB).toEqual(fileB);
    const [finished] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(finished!.status).toBe('ready');
    expect(finished!.error).toBeNull();
    expect(finished!.filesDone).toBe(2);
    expect(finished!.completedAt).toBeInstanceOf(Date);
  });

  it('fails a file without an earlier result', async () => {
    // src/a.ts failed before, so its regeneration has nothing to keep.
    const [fileA, fileB] = await fileRows();
    await context.db
      .update(patchFiles)
      .set({ status: 'failed', error: 'The model call timed out.', proposedText: null, diff: null })
      .where(eq(patchFiles.id, fileA!.id));
    await context.db.update(patchRequests).set({ status: 'partially_ready' }).where(eq(patchRequests.id, patchRequestId));
    const result = await regenerate({ userId, patchRequestId, fileId: fileA!.id });
    expect(result.ok).toBe(true);
    const [pendingA] = await fileRows();
    expect(pendingA!.keptResult).toBeNull();

    groq.reset();
    groq.setHandler(() => ({ text: files['src/a.ts'] }));
    const job = await takeAsLastAttempt(context, patchRequestId);
    await handlePreviewJob(context, job);

    const [failedA, keptB] = await fileRows();
    expect(failedA!.status).toBe('failed');
    expect(failedA!.error).toBe('The model returned the file unchanged, so there is nothing to apply.');
    expect(failedA!.regenerationError).toBeNull();
    expect(failedA!.proposedText).toBeNull();
    expect(keptB).toEqual(fileB);
    const [finished] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(finished!.status).toBe('partially_ready');
    expect(finished!.error).toBe("1 of 2 files could not be fixed; see each file's error.");
  });

  it('refuses a file of a superseded run', async () => {
    const [, fileB] = await fileRows();
    const [before] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    const jobsBefore = await context.boss.getQueueSize(previewQueue);
    // A push to the pull request supersedes the run but leaves its finished previews.
    await context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, setup.runId));
    try {
      const result = await regenerate({
        userId,
        patchRequestId,
        fileId: fileB!.id,
      });
      expect(result).toEqual({ ok: false, reason: 'run_not_completed', status: 'superseded' });
    } finally {
      await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, setup.runId));
    }

    // The file keeps the diff the user saw, and no job would cancel the preview.
    const [, keptB] = await fileRows();
    expect(keptB).toEqual(fileB);
    const [after] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(after!.status).toBe(before!.status);
    expect(await context.boss.getQueueSize(previewQueue)).toBe(jobsBefore);
  });

  it('refuses a file whose findings an analysis replaced', async () => {
    const [, fileB] = await fileRows();
    const [before] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    const jobsBefore = await context.boss.getQueueSize(previewQueue);
    // Analyzing the run again, for example after a base branch change, deletes its findings.
    await context.db.delete(findings).where(eq(findings.path, 'src/b.ts'));

    const result = await regenerate({
      userId,
      patchRequestId,
      fileId: fileB!.id,
    });
    expect(result).toEqual({ ok: false, reason: 'findings_gone', path: 'src/b.ts' });
    const [, keptB] = await fileRows();
    expect(keptB).toEqual(fileB);
    const [after] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(after!.status).toBe(before!.status);
    expect(await context.boss.getQueueSize(previewQueue)).toBe(jobsBefore);
  });

  it('rejects a call over the allowance', async () => {
    const [fileA] = await fileRows();
    const [before] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    const jobsBefore = await context.boss.getQueueSize(previewQueue);
    const [account] = await context.db.select().from(users).where(eq(users.id, userId));
    await context.db
      .update(users)
      .set({ plan: 'free', tokenLimit: 1000, tokensUsed: 900 })
      .where(eq(users.id, userId));
    try {
      const result = await regenerate({ userId, patchRequestId, fileId: fileA!.id });
      expect(result.ok).toBe(false);
      if (result.ok || result.reason !== 'over_allowance') throw new Error(`unexpected ${JSON.stringify(result)}`);
      expect(result.over.allowance.remaining).toBe(100);
      expect(result.over.neededTokens).toBeGreaterThan(100);
      expect(result.over.calls.map((call) => call.path)).toEqual(['src/a.ts']);
    } finally {
      await context.db
        .update(users)
        .set({ plan: account!.plan, tokenLimit: account!.tokenLimit, tokensUsed: account!.tokensUsed })
        .where(eq(users.id, userId));
    }
    const [keptA] = await fileRows();
    expect(keptA).toEqual(fileA);
    const [after] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(after!.status).toBe(before!.status);
    expect(await context.boss.getQueueSize(previewQueue)).toBe(jobsBefore);
  });
});
