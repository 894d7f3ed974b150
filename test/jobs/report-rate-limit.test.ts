// A report job that GitHub rate-limits for longer than Octokit waits in the process ends and
// queues a new report job that starts once the limit lifts, up to
// GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS after the first rate-limited response.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { primaryRateLimitError, secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import type { Route } from '../../src/demo/fakes/github/router.ts';
import type { FakeState } from '../../src/demo/fakes/github/state.ts';
import { handleReportJob, reportQueue, type ReportJobData } from '../../src/jobs/report.ts';
import { cancelInstallationWork } from '../../src/runs/cancel-installation-work.ts';
import {
  createGitHubTestContext,
  insertFindings,
  insertInstallation,
  insertRun,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';

const checkRunsPath = '/repos/:owner/:repo/check-runs';
const listPath = '/repos/:owner/:repo/commits/:ref/check-runs';
const maxWaitSeconds = 3600;

let setup: GitHubTestContext;
/**
 * Reset time of the primary rate limit that the check run lookup gets after a created check
 * run's response is lost, or null for no lost response.
 */
let limitAfterCreate: number | null = null;
/** Runs when the report looks up its check run on GitHub, and is then cleared. */
let onCheckRunLookup: (() => Promise<void>) | null = null;

function routeOf(routes: Route<FakeState>[], method: string, pattern: string): Route<FakeState> {
  return routes.find((route) => route.method === method && route.pattern === pattern)!;
}

/** Inserts a completed run with one warning on a new head commit, and queues its report job. */
async function queuedReport(extra: Omit<ReportJobData, 'runId'> = {}) {
  const note = `notes/${Date.now()}-${Math.random()}.txt`;
  const headSha = await commitOnBranch(setup.git.dir, headBranch, { [note]: 'x\n' });
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha,
    baseSha: setup.git.baseSha,
  });
  await insertFindings(setup.context, run.id, [{ path: 'src/app.ts', line: 1, severity: 'warning' }]);
  const data: ReportJobData = { runId: run.id, ...extra };
  const jobId = (await setup.context.boss.send(reportQueue, data))!;
  await setup.context.db.update(prRuns).set({ reportJobId: jobId }).where(eq(prRuns.id, run.id));
  return { run, jobId };
}

/** Runs the report job `jobId` as a worker does (see `runDueJob`). */
async function runReportJob(jobId: string, whileActive?: () => Promise<void>) {
  await runDueJob<ReportJobData>(
    setup.context,
    reportQueue,
    jobId,
    (job) => handleReportJob(setup.context, job),
    whileActive,
  );
}

/** Returns the report jobs of a run other than `exceptId`, oldest first. */
async function laterJobs(runId: string, exceptId: string) {
  return setup.context.database.sql<
    { id: string; data: ReportJobData; start_after: string; state: string }[]
  >`
    SELECT id, data, start_after, state FROM pgboss.job
    WHERE name = ${reportQueue} AND data->>'runId' = ${runId} AND id <> ${exceptId}
    ORDER BY created_on, id`;
}

/**
 * Returns how many milliseconds after `before` the report job that followed `jobId` starts,
 * and fails the test when no job followed it.
 */
async function waitOfNextJob(runId: string, jobId: string, before: number): Promise<number> {
  const [next] = await laterJobs(runId, jobId);
  expect(next).toBeDefined();
  return new Date(next!.start_after).getTime() - before;
}

/**
 * Runs the report job `jobId`, checks that it ends without a retry, queues no later job and
 * stores the too-long wait as the report error, and returns its `job.report.rate_limit_too_long`
 * log line.
 */
async function expectTooLongWait(
  runId: string,
  jobId: string,
  reason = 'later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS (3600 s)',
) {
  await runReportJob(jobId);

  expect(await laterJobs(runId, jobId)).toEqual([]);
  const job = await setup.context.boss.getJobById(reportQueue, jobId);
  expect(job!.state).toBe('completed');
  const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  expect(stored!.reportError).toMatch(
    /^Posting the results to GitHub failed: GitHub rate-limited the installation until \S+, /,
  );
  expect(stored!.reportError).toContain(reason);
  expect(stored!.reportedAt).toBeNull();
  const logged = setup.context.logs.find(
    (line) => line.event === 'job.report.rate_limit_too_long' && line.runId === runId,
  );
  expect(logged).toBeDefined();
  return logged!;
}

const rejectedMessage = 'report_job_id is read-only in this test';

/**
 * Runs `action` while a trigger makes the database reject any change of the run's
 * `report_job_id`, which rolls back the transaction that queues the run's next report job.
 */
async function withReportJobIdRejected<T>(runId: string, action: () => Promise<T>): Promise<T> {
  const { sql } = setup.context.database;
  await sql.unsafe(`
    CREATE FUNCTION reject_report_job_id() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '${rejectedMessage}'; END $$;
    CREATE TRIGGER reject_report_job_id BEFORE UPDATE OF report_job_id ON pr_runs
    FOR EACH ROW WHEN (OLD.id = '${runId}') EXECUTE FUNCTION reject_report_job_id();`);
  try {
    return await action();
  } finally {
    await sql.unsafe('DROP TRIGGER reject_report_job_id ON pr_runs; DROP FUNCTION reject_report_job_id();');
  }
}

function checkRunsOf(runId: string) {
  return setup.fake.checkRuns.filter((candidate) => candidate.externalId === runId);
}

function createRequests(since: number) {
  return setup.fake.requests
    .slice(since)
    .filter((request) => request.method === 'POST' && request.path.endsWith('/check-runs'));
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
    env: { GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: String(maxWaitSeconds) },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
  const create = routeOf(checkRoutes, 'POST', checkRunsPath);
  setup.fake.addRoute({
    ...create,
    async handle(context) {
      const response = await create.handle(context);
      if (limitAfterCreate === null || response.status >= 300) return response;
      setup.fake.queueResponse(primaryRateLimitError('GET', listPath, limitAfterCreate));
      limitAfterCreate = null;
      return { status: 502, body: { message: 'Server Error' } };
    },
  });
  const list = routeOf(checkRoutes, 'GET', listPath);
  setup.fake.addRoute({
    ...list,
    async handle(context) {
      const hook = onCheckRunLookup;
      onCheckRunLookup = null;
      await hook?.();
      return list.handle(context);
    },
  });
});

beforeEach(() => {
  limitAfterCreate = null;
  onCheckRunLookup = null;
});

afterAll(async () => {
  await setup?.close();
});

describe('report job under a long rate limit', () => {
  it('waits for a primary limit to reset', async () => {
    const { run, jobId } = await queuedReport();
    const resetSeconds = Math.floor(Date.now() / 1000) + 20 * 60;
    setup.fake.queueResponse(primaryRateLimitError('POST', checkRunsPath, resetSeconds));
    const since = setup.fake.requests.length;

    await runReportJob(jobId);

    expect(checkRunsOf(run.id)).toEqual([]);
    const [next] = await laterJobs(run.id, jobId);
    expect(next).toBeDefined();
    expect(next!.state).toBe('created');
    expect(new Date(next!.start_after).getTime()).toBe((resetSeconds + 1) * 1000);
    expect(next!.data.runId).toBe(run.id);
    expect(next!.data.rateLimitedSince).toBeGreaterThan(0);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.reportJobId).toBe(next!.id);
    expect(stored!.reportError).toBeNull();
    expect(stored!.rateLimitedUntil?.getTime()).toBe((resetSeconds + 1) * 1000);
    expect(stored!.rateLimitedQueue).toBe('report');
    expect(stored!.rateLimitedJobId).toBe(next!.id);
    expect(createRequests(since)).toHaveLength(1);

    await runReportJob(next!.id);

    expect(checkRunsOf(run.id)).toHaveLength(1);
    expect(createRequests(since)).toHaveLength(2);
    const [reported] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(reported!.reportedAt).not.toBeNull();
    expect(reported!.rateLimitedUntil).toBeNull();
    expect(reported!.rateLimitedJobId).toBeNull();
  });

  it('waits for a secondary limit with retry-after', async () => {
    const { run, jobId } = await queuedReport();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 900));
    const before = Date.now();

    await runReportJob(jobId);

    const wait = await waitOfNextJob(run.id, jobId, before);
    expect(wait).toBeGreaterThanOrEqual(900_000);
    expect(wait).toBeLessThan(910_000);
    expect(checkRunsOf(run.id)).toEqual([]);
  });

  it('creates one check run after a lost response', async () => {
    const { run, jobId } = await queuedReport();
    // GitHub creates the check run but the response is lost, and the lookup that follows is
    // rate-limited.
    limitAfterCreate = Math.floor(Date.now() / 1000) + 30 * 60;
    const since = setup.fake.requests.length;

    await runReportJob(jobId);
    const [next] = await laterJobs(run.id, jobId);
    expect(next).toBeDefined();
    await runReportJob(next!.id);

    expect(checkRunsOf(run.id)).toHaveLength(1);
    expect(createRequests(since)).toHaveLength(1);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunId).toBe(checkRunsOf(run.id)[0]!.id);
    expect(stored!.reportedAt).not.toBeNull();
  });

  it('fails past the maximum wait', async () => {
    // A report rate-limited since 50 minutes ago, whose limit lifts in another 15.
    const { run, jobId } = await queuedReport({ rateLimitedSince: Date.now() - 50 * 60_000 });
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 15 * 60));

    await expectTooLongWait(run.id, jobId);
  });

  it('fails on a wait past the latest date', async () => {
    const { run, jobId } = await queuedReport();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 99_999_999_999_999));

    const logged = await expectTooLongWait(run.id, jobId, 'more than a year away');
    expect(logged.liftsAt).toBe('+275760-09-13T00:00:00.000Z');
  });

  it('waits a minute after a past reset', async () => {
    const { run, jobId } = await queuedReport();
    // Octokit sends no retry for a reset that has passed, so a retry would create the check run.
    const resetSeconds = Math.floor(Date.now() / 1000) - 100;
    setup.fake.queueResponse(primaryRateLimitError('POST', checkRunsPath, resetSeconds));
    const before = Date.now();

    await runReportJob(jobId);

    const wait = await waitOfNextJob(run.id, jobId, before);
    expect(wait).toBeGreaterThanOrEqual(60_000);
    expect(wait).toBeLessThan(70_000);
    expect(checkRunsOf(run.id)).toEqual([]);
  });

  it('leaves the report to a newer job', async () => {
    const { run, jobId } = await queuedReport();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 600));
    let newerJobId: string | null = null;

    // The run is analyzed again while the job posts its check run, which queues the run's next
    // report job.
    onCheckRunLookup = async () => {
      newerJobId = (await setup.context.boss.send(reportQueue, { runId: run.id }, { startAfter: 3600 }))!;
      await setup.context.db.update(prRuns).set({ reportJobId: newerJobId }).where(eq(prRuns.id, run.id));
    };
    await runReportJob(jobId);

    const later = await laterJobs(run.id, jobId);
    expect(later.map((job) => job.id)).toEqual([newerJobId]);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.reportJobId).toBe(newerJobId);
    expect(stored!.reportError).toBeNull();
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.report.completed' && line.jobId === jobId,
    );
    expect(logged?.reason).toBe(`report job ${newerJobId} works on the run`);
  });

  it('queues nothing for a superseded run', async () => {
    const { run, jobId } = await queuedReport();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 600));

    // A push supersedes the run after the report has read it.
    onCheckRunLookup = async () => {
      await setup.context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, run.id));
    };

    await runReportJob(jobId);

    expect(await laterJobs(run.id, jobId)).toEqual([]);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.reportJobId).toBe(jobId);
    expect(stored!.reportError).toBeNull();
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.report.completed' && line.jobId === jobId,
    );
    expect(logged?.reason).toBe('run is superseded');
  });

  it('logs a failed reschedule', async () => {
    const { run, jobId } = await queuedReport();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 600));

    const error = await withReportJobIdRejected(run.id, () =>
      runReportJob(jobId).catch((caught: unknown) => caught),
    );

    expect(String((error as Error).cause)).toContain(rejectedMessage);
    expect(await laterJobs(run.id, jobId)).toEqual([]);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.reportJobId).toBe(jobId);
    expect(stored!.reportError).toBeNull();
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.report.failed' && line.jobId === jobId,
    );
    expect(logged).toBeDefined();
    expect(logged!.runId).toBe(run.id);
    expect(logged!.level).toBe(50);
    expect(logged!.rateLimit).toBe('secondary');
    expect(logged!.finalAttempt).toBe(false);
    expect(JSON.stringify(logged!.err)).toContain(rejectedMessage);
  });

  it('records the limit after a failed last reschedule', async () => {
    const { run, jobId } = await queuedReport();
    await setup.context.database.sql`UPDATE pgboss.job SET retry_limit = 0 WHERE id = ${jobId}`;
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 600));

    await withReportJobIdRejected(run.id, () => runReportJob(jobId).catch(() => undefined));

    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.reportError).toContain('Posting the results to GitHub failed: GitHub returned 403');
    expect(stored!.reportError).not.toContain(rejectedMessage);
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.report.failed' && line.jobId === jobId,
    );
    expect(logged!.finalAttempt).toBe(true);
  });

  it('lets a suspend cancel the waiting job', async () => {
    const { run, jobId } = await queuedReport();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 600));
    await runReportJob(jobId);
    const [next] = await laterJobs(run.id, jobId);
    expect(next).toBeDefined();

    const cancelled = await setup.context.db.transaction((tx) =>
      cancelInstallationWork(tx, setup.context.boss, setup.installationId, 'Suspended in a test.'),
    );

    expect(cancelled.reports).toBeGreaterThanOrEqual(1);
    const job = await setup.context.boss.getJobById(reportQueue, next!.id);
    expect(job!.state).toBe('cancelled');
  });
  it('queues nothing after its job is cancelled', async () => {
    const { run, jobId } = await queuedReport();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 600));

    // A suspend cancels the running job, and an unsuspend follows before the rate limit.
    onCheckRunLookup = async () => {
      await setup.context.db.transaction((tx) =>
        cancelInstallationWork(tx, setup.context.boss, setup.installationId, 'Suspended in a test.'),
      );
    };
    await runReportJob(jobId);

    expect(await laterJobs(run.id, jobId)).toEqual([]);
    const job = await setup.context.boss.getJobById(reportQueue, jobId);
    expect(job!.state).toBe('cancelled');
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.reportJobId).toBe(jobId);
    expect(stored!.reportError).toBe('The check run and summary comment were not posted. Suspended in a test.');
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.report.completed' && line.jobId === jobId,
    );
    expect(logged?.reason).toBe(`report job ${jobId} was cancelled`);
  });
});
