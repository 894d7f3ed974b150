import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import { installations, patchFiles, patchRequests, users } from '../../src/db/schema/index.ts';
import { handlePreviewJob } from '../../src/jobs/preview.ts';
import type { FakeGroq } from '../../src/demo/fakes/groq.ts';
import { logsOf, type TestContext } from '../helpers/context.ts';
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

const staleFixOfA = 'export const a = 1; // stale attempt\n';
const newFixOfA = 'export const a = 1; // regenerated\n';
const rejectedWrite = 'writes of the stale result are disabled for this test';

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let userId: string;

beforeAll(async () => {
  setup = await createPreviewTestContext({ head: consoleLogFiles, groqApiKey: 'gsk_platform_stale_job_test' });
  ({ context, groq } = setup);
  const [user] = await context.db
    .insert(users)
    .values({ login: 'stale-job-user', plan: 'pro', tokenLimit: 100_000 })
    .returning();
  userId = user!.id;
  await context.db.update(installations).set({ userId }).where(eq(installations.id, installationId));
  await insertConsoleLogFindings(context, setup.runId, Object.keys(consoleLogFiles));
});

afterAll(async () => {
  await setup?.close();
});

/** Sets the fake Groq to reply with `fixOfA` for src/a.ts and with the first fix otherwise. */
function answerWith(fixOfA: string): void {
  answerWithFixedFiles({ ...consoleLogFixes, 'src/a.ts': fixOfA }, groq, setup.gemini);
}

/** Runs `action` while every write of `proposedText` to a patch file raises `rejectedWrite`. */
async function whileWritesFail(proposedText: string, action: () => Promise<void>): Promise<void> {
  await context.db.execute(sql.raw(`
    CREATE FUNCTION reject_patch_file_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '${rejectedWrite}'; END $$;
    CREATE TRIGGER reject_patch_file_write BEFORE UPDATE ON patch_files
      FOR EACH ROW WHEN (NEW.proposed_text = '${proposedText}')
      EXECUTE FUNCTION reject_patch_file_write();
  `));
  try {
    await action();
  } finally {
    await context.db.execute(sql.raw(`
      DROP TRIGGER reject_patch_file_write ON patch_files;
      DROP FUNCTION reject_patch_file_write();
    `));
  }
}

async function requestRow(patchRequestId: string) {
  const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
  return request!;
}

async function fileRow(patchRequestId: string, path: string) {
  const [file] = await context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .then((rows) => rows.filter((row) => row.path === path));
  return file!;
}

describe('stale preview job', () => {
  it('leaves a regeneration of a newer job running', async () => {
    const patchRequestId = await createPatchRequestForRun(context, setup.runId, userId);
    answerWith(consoleLogFixes['src/a.ts']!);
    // The first job builds the preview on its last attempt, and pg-boss still shows that
    // attempt active, as after a retry past its time limit.
    const staleJob = await takeAsLastAttempt(context, patchRequestId);
    await handlePreviewJob(context, staleJob);
    expect((await requestRow(patchRequestId)).status).toBe('ready');
    const readyA = await fileRow(patchRequestId, 'src/a.ts');

    const payment = await loadPreviewPayment(context, userId);
    const regenerated = await regeneratePatchFile(context.db, context.boss, {
      userId,
      patchRequestId,
      fileId: readyA.id,
      payment,
    });
    expect(regenerated.ok).toBe(true);
    const newJobId = (await requestRow(patchRequestId)).previewJobId!;
    expect(newJobId).not.toBe(staleJob.id);

    // The stale attempt leaves the regenerated file to the newer job and calls no model.
    answerWith(staleFixOfA);
    const callsBefore = groq.requests.length;
    await expect(handlePreviewJob(context, staleJob)).resolves.toBeUndefined();
    expect(groq.requests.length).toBe(callsBefore);

    const running = await requestRow(patchRequestId);
    expect(running.status).toBe('running');
    expect(running.error).toBeNull();
    expect(running.completedAt).toBeNull();
    expect(running.previewJobId).toBe(newJobId);
    const waitingA = await fileRow(patchRequestId, 'src/a.ts');
    expect(waitingA.status).toBe('pending');
    expect(waitingA.keptResult).not.toBeNull();
    expect(waitingA.regenerationError).toBeNull();
    expect(logsOf(context, 'preview.stale_job', { jobId: staleJob.id })).toEqual([
      expect.objectContaining({ currentJobId: newJobId, patchRequestId }),
    ]);

    // The newer job then stores its own result.
    answerWith(newFixOfA);
    const newJob = await takeAsLastAttempt(context, patchRequestId);
    expect(newJob.id).toBe(newJobId);
    await handlePreviewJob(context, newJob);

    const finished = await requestRow(patchRequestId);
    expect(finished.status).toBe('ready');
    expect(finished.error).toBeNull();
    const storedA = await fileRow(patchRequestId, 'src/a.ts');
    expect(storedA.status).toBe('ready');
    expect(storedA.proposedText).toBe(newFixOfA);
    expect(storedA.keptResult).toBeNull();
    expect(storedA.regenerationError).toBeNull();
  });

  it('leaves the preview to a job that took over during the attempt', async () => {
    const [other] = await context.db
      .insert(users)
      .values({ login: 'taken-over-user', plan: 'pro', tokenLimit: 100_000 })
      .returning();
    const patchRequestId = await createPatchRequestForRun(context, setup.runId, other!.id);
    const job = await takeAsLastAttempt(context, patchRequestId);
    const newerJobId = crypto.randomUUID();
    // Another job becomes the preview's job while the model replies to the attempt's first file,
    // and the attempt then fails to store that file.
    let takeover: Promise<unknown> | undefined;
    groq.setHandler(() => {
      takeover ??= Promise.resolve(
        context.db
          .update(patchRequests)
          .set({ previewJobId: newerJobId })
          .where(eq(patchRequests.id, patchRequestId))
          .execute(),
      );
      return { text: staleFixOfA };
    });
    await whileWritesFail(staleFixOfA, async () => {
      await expect(handlePreviewJob(context, job)).rejects.toThrow(rejectedWrite);
    });
    await takeover;

    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('running');
    expect(request.error).toBeNull();
    expect(request.completedAt).toBeNull();
    expect(logsOf(context, 'job.preview.failure_skipped', { patchRequestId })).toEqual([
      expect.objectContaining({ jobId: job.id, currentJobId: newerJobId }),
    ]);
  });

  it('ends the preview when its job is current', async () => {
    const [other] = await context.db
      .insert(users)
      .values({ login: 'current-job-user', plan: 'pro', tokenLimit: 100_000 })
      .returning();
    const patchRequestId = await createPatchRequestForRun(context, setup.runId, other!.id);
    answerWith(staleFixOfA);
    const job = await takeAsLastAttempt(context, patchRequestId);
    await whileWritesFail(staleFixOfA, async () => {
      await expect(handlePreviewJob(context, job)).rejects.toThrow(rejectedWrite);
    });

    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('partially_ready');
    expect(request.completedAt).toBeInstanceOf(Date);
    const failedA = await fileRow(patchRequestId, 'src/a.ts');
    expect(failedA.status).toBe('failed');
    expect(failedA.error).toBe(`Preview failed: Database query failed: ${rejectedWrite}`);
    const skipped = context.logs.filter(
      (line) => line.event === 'job.preview.failure_skipped' && line.patchRequestId === patchRequestId,
    );
    expect(skipped).toEqual([]);
  });
});
