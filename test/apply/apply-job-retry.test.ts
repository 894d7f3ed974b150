// An apply job whose attempt fails with an unexpected error is retried by pg-boss after a
// delay. Until then the preview page and the API show the failed attempt and the retry time.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type postgres from 'postgres';
import { primaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { applyQueue } from '../../src/jobs/apply.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  invalidResponseMessage,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { bindApplyJobHelpers } from '../helpers/apply-jobs.ts';
import { repository, prNumber } from '../helpers/github-context.ts';
import { waitFor } from '../helpers/process.ts';

let applyContext: ApplyTestContext;
let cookie: string;

const { newRequest, stored, applyJobs, runApplyJob, previewPage, previewJson } = bindApplyJobHelpers(() => ({
  applyContext,
  cookie,
}));

beforeAll(async () => {
  applyContext = await createApplyTestContext();
  const session = await createSession(applyContext.setup.context.db, applyContext.user.id, 1);
  cookie = `fixwright_session=${session.token}`;
});

beforeEach(async () => {
  await resetPullRequestHead(applyContext.setup);
});

afterAll(async () => {
  await applyContext?.setup.close();
});

/** Applies a new request while GitHub rate-limits the ref update, which queues an apply job. */
async function queueApplyJob() {
  const request = await newRequest();
  const resetSeconds = Math.floor(Date.now() / 1000) + 20 * 60;
  applyContext.setup.fake.queueResponse(primaryRateLimitError('PATCH', refPattern, resetSeconds));
  expect((await requestApply(applyContext, request.id)).status).toBe(202);
  const [job] = await applyJobs(request.id);
  expect(job).toBeDefined();
  return { request, job };
}

/** Cancels the statement of another connection that waits for a lock, once one waits. */
async function cancelStatementWaitingForLock() {
  const { sql } = applyContext.setup.context.database;
  await waitFor(
    async () => {
      const [waiting] = await sql<{ pid: number }[]>`
        SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()`;
      if (!waiting) return false;
      const [cancel] = await sql<{ sent: boolean }[]>`SELECT pg_cancel_backend(${waiting.pid}) AS sent`;
      return cancel!.sent;
    },
    { timeoutMs: 10_000, describe: () => 'a statement to wait for a lock' },
  );
}

/** Message of an attempt whose statement PostgreSQL cancelled. */
const attemptError = 'Database query failed: canceling statement due to user request';

/**
 * Runs an attempt of apply job `jobId` while another transaction holds the row lock that
 * `lockRow` takes, and cancels the attempt's statement that waits for it. A database error is
 * not a known rejection, so the attempt fails with `attemptError` and pg-boss retries the job.
 */
async function failAttemptAtLock(
  jobId: string,
  lockRow: (tx: postgres.TransactionSql) => Promise<unknown>,
) {
  await applyContext.setup.context.database.sql.begin(async (tx) => {
    await lockRow(tx);
    const attempt = runApplyJob(jobId);
    await cancelStatementWaitingForLock();
    await expect(attempt).rejects.toThrow(attemptError);
  });
}

/** Returns `applyRetry` of `GET /api/patch-requests/:id`. */
async function applyRetryOf(id: string) {
  return ((await previewJson(id)) as unknown as { applyRetry: Record<string, unknown> | null }).applyRetry;
}

describe('apply job retry', () => {
  it('shows a failed attempt until the retry', async () => {
    const { setup } = applyContext;
    const { request, job } = await queueApplyJob();

    // An installation event locks the installation's row while the job's first attempt reads
    // it, and PostgreSQL cancels the waiting statement, as a statement_timeout does.
    await failAttemptAtLock(
      job!.id,
      (tx) => tx`SELECT id FROM installations WHERE id = ${setup.installationId} FOR UPDATE`,
    );

    const pgBossJob = await setup.context.boss.getJobById(applyQueue, job!.id);
    expect(pgBossJob!.state).toBe('retry');
    const retryAt = pgBossJob!.startAfter.toISOString();
    expect(pgBossJob!.startAfter.getTime()).toBeGreaterThan(Date.now());
    const waiting = await stored(request.id);
    expect(waiting.applyJobId).toBe(job!.id);
    expect(waiting.applyRateLimitedUntil).toBeNull();
    expect(waiting.applyError).toBeNull();
    const json = await previewJson(request.id);
    expect(json.rateLimitWait).toBeNull();
    expect(json.otherApplyWait).toBeNull();
    expect(json.applyError).toBeNull();
    expect(await applyRetryOf(request.id)).toEqual({
      job: applyQueue,
      retryAt,
      failedAttempts: 1,
      maxAttempts: 3,
      error: attemptError,
    });
    const page = await previewPage(request.id);
    expect(page).toContain(
      `Applying failed (attempt 1 of 3): ${attemptError}. The apply job tries again at`,
    );
    expect(page).toContain(`datetime="${retryAt}"`);

    await runApplyJob(job!.id);

    const applied = await stored(request.id);
    expect(applied.appliedAt).not.toBeNull();
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(applied.appliedCommitSha);
    expect(await applyRetryOf(request.id)).toBeNull();
    expect(await previewPage(request.id)).not.toContain('Applying failed');
  });

  it('hides the wait of a failed first statement', async () => {
    const { setup } = applyContext;
    const { request, job } = await queueApplyJob();
    const rateLimitedUntil = (await stored(request.id)).applyRateLimitedUntil;
    expect(rateLimitedUntil).not.toBeNull();
    expect(await previewPage(request.id)).toContain('Applying waits for a GitHub rate limit');

    // The patch request's row is locked while the attempt's first statement clears the stored
    // wait. PostgreSQL cancels that statement, as it fails while the database is briefly down.
    await failAttemptAtLock(
      job!.id,
      (tx) => tx`SELECT id FROM patch_requests WHERE id = ${request.id} FOR UPDATE`,
    );

    const pgBossJob = await setup.context.boss.getJobById(applyQueue, job!.id);
    expect(pgBossJob!.state).toBe('retry');
    // The attempt failed before it cleared the wait, which stays stored.
    expect((await stored(request.id)).applyRateLimitedUntil).toEqual(rateLimitedUntil);
    const page = await previewPage(request.id);
    expect(page).toContain(`Applying failed (attempt 1 of 3): ${attemptError}. The apply job tries again at`);
    expect(page).not.toContain('rate-limit-wait');
    expect(page).not.toContain('waits for a GitHub rate limit');
    expect(page).not.toContain('waited for a GitHub rate limit');
    const json = await previewJson(request.id);
    expect(json.rateLimitWait).toBeNull();
    expect(json.otherApplyWait).toBeNull();
    expect(await applyRetryOf(request.id)).toMatchObject({ failedAttempts: 1, error: attemptError });

    // Applying goes ahead, as during any other retry, instead of returning the wait that ended.
    const response = await requestApply(applyContext, request.id);

    expect(response.status).toBe(200);
    const applied = await stored(request.id);
    expect(applied.applyRateLimitedUntil).toBeNull();
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(applied.appliedCommitSha);
  });

  it('stores an invalid pull request without a retry', async () => {
    const { setup } = applyContext;
    const { request, job } = await queueApplyJob();
    const pullPath = `/repos/${repository}/pulls/${prNumber}`;
    setup.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body: { state: 'open' } });

    await runApplyJob(job!.id);

    expect((await setup.context.boss.getJobById(applyQueue, job!.id))!.state).toBe('completed');
    const failed = await stored(request.id);
    expect(failed.appliedAt).toBeNull();
    expect(failed.applyStartedAt).toBeNull();
    expect(failed.applyError).toBe(
      `GitHub returned an invalid response (status 200) to GET ${pullPath}: closed_at: Invalid ` +
        'input: expected string, received undefined; merged_at: Invalid input: expected string, ' +
        'received undefined; updated_at: Invalid input: expected string, received undefined; ' +
        'head: Invalid input: expected object, received undefined; base: Invalid input: expected ' +
        'object, received undefined. GitHub, or a proxy between this server and GITHUB_API_URL, ' +
        `may be failing, so wait a few minutes. Patch request ${request.id} was not applied, so ` +
        'you can apply it again after that.',
    );
    expect(await applyRetryOf(request.id)).toBeNull();
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('stores an invalid ref update without a retry', async () => {
    const { setup } = applyContext;
    const { request, job } = await queueApplyJob();
    // The fake does not update the branch, so the branch read after the update finds it unmoved.
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 200, body: { object: {} } });

    await runApplyJob(job!.id);

    expect((await setup.context.boss.getJobById(applyQueue, job!.id))!.state).toBe('completed');
    const failed = await stored(request.id);
    expect(failed.appliedAt).toBeNull();
    expect(failed.applyStartedAt).toBeNull();
    expect(failed.applyError).toBe(
      invalidResponseMessage(
        request.id,
        `PATCH /repos/${repository}/git/refs/heads/${headBranch}`,
        200,
        'object.sha: Invalid input: expected string, received undefined',
      ),
    );
    expect(await applyRetryOf(request.id)).toBeNull();
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('stores invalid job data without a retry', async () => {
    const { setup } = applyContext;
    const request = await newRequest();
    const [file] = await setup.context.database.sql<{ id: string }[]>`
      SELECT id FROM patch_files WHERE patch_request_id = ${request.id}`;
    // An earlier version queued jobs whose previewVersion named a file twice, which the job's
    // data schema now rejects. The job waited for a rate limit.
    const entry = `${file!.id}:0:0123456789abcdef`;
    const jobId = await setup.context.boss.send(applyQueue, {
      patchRequestId: request.id,
      userId: applyContext.user.id,
      previewVersion: `${entry},${entry}`,
    });
    await setup.context.database.sql`
      UPDATE patch_requests
      SET apply_job_id = ${jobId!}, apply_rate_limited_until = now() + interval '5 minutes'
      WHERE id = ${request.id}`;
    const updatesBefore = setup.fake.requests.filter((recorded) => recorded.method === 'PATCH').length;

    await runApplyJob(jobId!);

    expect((await setup.context.boss.getJobById(applyQueue, jobId!))!.state).toBe('completed');
    const message =
      `Apply job ${jobId} has invalid data, so nothing was applied: previewVersion: expected one ` +
      'FILE_ID:GENERATION:DIFF_HASH entry per ready file, joined by commas, as GET ' +
      `/api/patch-requests/:id returns them, not 2 entries for file ${file!.id}. An earlier ` +
      'version of Fixwright can have queued such a job. Reload the preview and apply it again.';
    const failed = await stored(request.id);
    expect(failed.applyError).toBe(message);
    expect(failed.applyRateLimitedUntil).toBeNull();
    expect(failed.appliedAt).toBeNull();
    expect(failed.applyStartedAt).toBeNull();
    const json = await previewJson(request.id);
    expect(json.applyError).toBe(message);
    expect(json.rateLimitWait).toBeNull();
    expect(await applyRetryOf(request.id)).toBeNull();
    expect(await previewPage(request.id)).toContain(`Apply job ${jobId} has invalid data`);
    expect(setup.fake.requests.filter((recorded) => recorded.method === 'PATCH')).toHaveLength(updatesBefore);
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  // pg-boss 10 stores these outputs itself: for a worker that stops while the job runs, and for
  // a job past its time limit.
  const outputs: [string, string | object, string][] = [
    ['a stopped worker', 'pg-boss shut down while active', 'pg-boss shut down while active'],
    [
      'a timeout',
      { value: { message: 'job failed by timeout in active state' } },
      'job failed by timeout in active state',
    ],
  ];
  it.each(outputs)('shows the output of %s', async (_case, output, message) => {
    const { setup } = applyContext;
    const { request, job } = await queueApplyJob();

    await setup.context.boss.fail(applyQueue, job!.id, output as object);

    expect(await applyRetryOf(request.id)).toMatchObject({ failedAttempts: 1, maxAttempts: 3, error: message });
  });
});
