import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { runPreview } from '../../src/autofix/preview.ts';
import { patchFiles, patchRequests } from '../../src/db/schema/index.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import {
  createGitHubTestContext,
  insertFindings,
  insertInstallation,
  insertRun,
  insertUser,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

let setup: GitHubTestContext;
let groq: FakeGroq;

beforeAll(async () => {
  groq = await startFakeGroq();
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n", 'src/b.ts': "console.log('b');\n" },
    env: {
      GROQ_API_KEY: 'gsk_cancel_test',
      GROQ_BASE_URL: groq.url,
      LLM_MAX_RETRIES: '0',
      PREVIEW_FILE_CONCURRENCY: '1',
    },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterAll(async () => {
  await setup?.close();
  await groq?.close();
});

let shared: { runId: string; findingIds: string[] } | undefined;

/** Creates a patch request for the findings in src/a.ts and src/b.ts of one shared run. */
async function newTwoFilePreview() {
  if (!shared) {
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
    });
    const selected = await insertFindings(setup.context, run.id, [
      { path: 'src/a.ts', line: 1, severity: 'warning' },
      { path: 'src/b.ts', line: 1, severity: 'warning' },
    ]);
    shared = { runId: run.id, findingIds: selected.map((finding) => finding.id) };
  }
  const user = await insertUser(setup.context);
  const created = await createPatchRequest(setup.context.db, setup.context.boss, {
    runId: shared.runId,
    userId: user.id,
    findingIds: shared.findingIds,
  });
  if (!created.ok) throw new Error('patch request not created');
  return created;
}

/** Takes the preview job of the patch request from the queue, as a worker does. */
async function takeJob(patchRequestId: string) {
  const jobs = await setup.context.boss.fetch<{ patchRequestId: string }>(previewQueue, { batchSize: 10 });
  const job = jobs.find((candidate) => candidate.data.patchRequestId === patchRequestId);
  if (!job) throw new Error(`no queued preview job for ${patchRequestId}`);
  return job;
}

/** Checks that src/a.ts is ready and src/b.ts was not started, and returns the request. */
async function expectFirstFileOnly(patchRequestId: string) {
  const files = await setup.context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .orderBy(patchFiles.path);
  expect(files.map((file) => [file.path, file.status])).toEqual([
    ['src/a.ts', 'ready'],
    ['src/b.ts', 'pending'],
  ]);
  const [request] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
  return request!;
}

/**
 * Sets the fake Groq to start `change` when the first file's call arrives and to reply to each
 * call after 500 ms. Returns the change's promise once the call has arrived.
 */
function changeDuringFirstCall(change: () => PromiseLike<unknown>): () => Promise<unknown> {
  let started: Promise<unknown> | undefined;
  groq.setHandler(() => {
    // drizzle runs a query when it is awaited, so Promise.resolve starts it now.
    started ??= Promise.resolve(change());
    return { text: 'export {};\n', delayMs: 500 };
  });
  return async () => started;
}

/** Returns the chat completion calls that the fake Groq received after the first `before`. */
function completionsAfter(before: number) {
  return groq.requests.slice(before).filter((request) => request.path.endsWith('/chat/completions'));
}

describe('runPreview cancellation', () => {
  it('stops before the next file', async () => {
    const created = await newTwoFilePreview();

    // A newer commit cancels the request while the model works on the first file.
    const callsBefore = groq.requests.length;
    const cancellation = changeDuringFirstCall(() =>
      setup.context.db
        .update(patchRequests)
        .set({ status: 'cancelled', error: 'Cancelled: the pull request has a newer commit.' })
        .where(eq(patchRequests.id, created.id))
        .execute(),
    );
    const outcome = await runPreview(setup.context, created.id, 0, setup.context.logger);
    await cancellation();

    expect(outcome.status).toBe('cancelled');
    expect(completionsAfter(callsBefore)).toHaveLength(1);
    const request = await expectFirstFileOnly(created.id);
    expect(request.status).toBe('cancelled');
    expect(request.error).toContain('newer commit');
  });

  it('stops once its attempt ended', async () => {
    const created = await newTwoFilePreview();
    const job = await takeJob(created.id);
    const callsBefore = groq.requests.length;

    // pg-boss expires the job while the model works on the first file and queues a retry.
    const expiry = changeDuringFirstCall(() =>
      setup.context.db.execute(sql`UPDATE pgboss.job SET state = 'retry' WHERE id = ${job.id}`),
    );
    const outcome = await runPreview(setup.context, created.id, 0, setup.context.logger, { jobId: job.id });
    await expiry();

    expect(outcome.status).toBe('skipped');
    expect(completionsAfter(callsBefore)).toHaveLength(1);
    const request = await expectFirstFileOnly(created.id);
    expect(request.status).toBe('running');
    expect(setup.context.logs.some((line) => line.event === 'preview.attempt_ended')).toBe(true);
  });

  it('leaves the files to a newer preview job', async () => {
    const created = await newTwoFilePreview();
    const job = await takeJob(created.id);
    const newerJobId = crypto.randomUUID();
    await setup.context.db
      .update(patchRequests)
      .set({ previewJobId: newerJobId })
      .where(eq(patchRequests.id, created.id));
    const callsBefore = groq.requests.length;
    groq.setHandler(() => ({ text: 'export {};\n' }));

    const outcome = await runPreview(setup.context, created.id, 1, setup.context.logger, { jobId: job.id });

    expect(outcome.status).toBe('skipped');
    expect(groq.requests.length).toBe(callsBefore);
    const [request] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, created.id));
    expect(request!.status).toBe('queued');
    const skip = setup.context.logs.find(
      (line) => line.event === 'preview.stale_job' && line.jobId === job.id,
    );
    expect(skip).toMatchObject({ currentJobId: newerJobId, attempt: 1 });
  });

  it('claims no file once a newer preview job took over', async () => {
    const created = await newTwoFilePreview();
    const job = await takeJob(created.id);
    const callsBefore = groq.requests.length;

    // A newer job becomes the request's preview job while the model works on the first file.
    const takeover = changeDuringFirstCall(() =>
      setup.context.db
        .update(patchRequests)
        .set({ previewJobId: crypto.randomUUID() })
        .where(eq(patchRequests.id, created.id))
        .execute(),
    );
    const outcome = await runPreview(setup.context, created.id, 0, setup.context.logger, { jobId: job.id });
    await takeover();

    // The first file's call was paid, so its result is kept. The second is left to the newer job.
    expect(outcome.status).toBe('running');
    expect(completionsAfter(callsBefore)).toHaveLength(1);
    const request = await expectFirstFileOnly(created.id);
    expect(request.status).toBe('running');
  });

  it('runs every file while active', async () => {
    const created = await newTwoFilePreview();
    const job = await takeJob(created.id);
    groq.setHandler(() => ({ text: 'export {};\n' }));

    const outcome = await runPreview(setup.context, created.id, 0, setup.context.logger, { jobId: job.id });

    expect(outcome.status).toBe('ready');
    expect(outcome.files).toBe(2);
  });
});
