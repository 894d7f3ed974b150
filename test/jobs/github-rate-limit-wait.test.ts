// Analyze and "Fix with AI" notice jobs that GitHub rate-limits for longer than Octokit waits
// in the process end, and queue a new job that starts once the limit lifts. The run page and
// the API show the wait until the new job starts.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { primaryRateLimitError, secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import {
  fixPressNoticeQueue,
  handleFixPressNoticeJob,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import { reportRun } from '../../src/report/report-run.ts';
import { cancelInstallationWork } from '../../src/runs/cancel-installation-work.ts';
import { createApp } from '../../src/web/app.tsx';
import {
  createGitHubTestContext,
  insertFindings,
  insertInstallation,
  fakePullRequestEvent,
  insertRun,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { createSignedInUser, type SignedInUser } from '../helpers/web.ts';

const pullPath = '/repos/:owner/:repo/pulls/:pull_number';
const checkRunPath = '/repos/:owner/:repo/check-runs/:check_run_id';
const maxWaitSeconds = 3600;

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;
/**
 * Runs when the analysis reads the pull request, and is then cleared. That read then gets a
 * secondary rate limit of 600 s, so the hook runs after the request that GitHub rate-limits
 * has been sent.
 */
let onPullRequestRead: (() => Promise<void>) | null = null;

/** Inserts a queued run of the fake pull request's head and queues its analyze job. */
async function queuedAnalysis(extra: Omit<AnalyzeJobData, 'runId'> = {}) {
  // The fake serves one head commit, and a pull request has one run per commit.
  await setup.context.db.delete(prRuns).where(eq(prRuns.headSha, setup.git.headSha));
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
    status: 'queued',
  });
  const data: AnalyzeJobData = { runId: run.id, ...extra };
  const jobId = (await setup.context.boss.send(analyzeQueue, data))!;
  await setup.context.db.update(prRuns).set({ analyzeJobId: jobId }).where(eq(prRuns.id, run.id));
  return { run, jobId };
}

const runAnalyzeJob = (jobId: string) =>
  runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
    handleAnalyzeJob(setup.context, job),
  );
const runNoticeJob = (jobId: string) =>
  runDueJob<FixPressNoticeJobData>(setup.context, fixPressNoticeQueue, jobId, (job) =>
    handleFixPressNoticeJob(setup.context, job),
  );

/** Returns the jobs of `queue` for the run other than `exceptId`, oldest first. */
async function laterJobs(queue: string, runId: string, exceptId: string) {
  return setup.context.database.sql<{ id: string; data: { rateLimitedSince?: number }; start_after: string; state: string }[]>`
    SELECT id, data, start_after, state FROM pgboss.job
    WHERE name = ${queue} AND data->>'runId' = ${runId} AND id <> ${exceptId}
    ORDER BY created_on, id`;
}

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

async function runPage(runId: string): Promise<string> {
  const response = await app.request(`/runs/${runId}`, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return response.text();
}

async function runJson(runId: string) {
  const response = await app.request(`/api/runs/${runId}`, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return (await response.json()) as { status: string; error: string | null; rateLimitWait: unknown };
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\nconsole.log(a);\n' },
    env: { GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: String(maxWaitSeconds) },
  });
  user = await createSignedInUser(setup.context.db, { login: 'rate-limit-owner' });
  await insertInstallation(setup.context, { id: setup.installationId, userId: user.userId });
  app = createApp(setup.context);
  const read = defaultRoutes.find((route) => route.method === 'GET' && route.pattern === pullPath)!;
  setup.fake.addRoute({
    ...read,
    async handle(context) {
      const hook = onPullRequestRead;
      if (!hook) return read.handle(context);
      onPullRequestRead = null;
      await hook();
      const { status, headers, body } = secondaryRateLimitError('GET', pullPath, 600);
      return { status, headers, body };
    },
  });
});

beforeEach(() => {
  onPullRequestRead = null;
});

afterAll(async () => {
  await setup?.close();
});

/** Handles a `pull_request` event of the fake pull request's head with `action` at `at`. */
async function pullRequestEvent(action: 'closed' | 'reopened', at: string): Promise<string> {
  const event = fakePullRequestEvent(setup, action);
  event.pull_request.updated_at = at;
  if (action === 'closed') event.pull_request.closed_at = at;
  const payload = pullRequestPayload.parse(event);
  return setup.context.db.transaction((tx) => handlePullRequestEvent(tx, setup.context.boss, payload));
}

describe('analyze job under a long rate limit', () => {
  it('shows no wait once the run is queued again', async () => {
    const { run, jobId } = await queuedAnalysis();
    onPullRequestRead = async () => {};
    await runAnalyzeJob(jobId);
    expect((await storedRun(run.id)).rateLimitedUntil).not.toBeNull();

    // Closing cancels the waiting job, and reopening queues the run again with a new job.
    expect(await pullRequestEvent('closed', '2030-01-01T00:00:00Z')).toMatch(/cancelled 1 run\(s\)/);
    expect(await pullRequestEvent('reopened', '2030-01-01T00:01:00Z')).toMatch(/queued again/);

    const queued = await storedRun(run.id);
    expect(queued.status).toBe('queued');
    expect(queued.analyzeJobId).not.toBe(jobId);
    expect(queued.rateLimitedUntil).toBeNull();
    expect(queued.rateLimitedJobId).toBeNull();
    expect(queued.rateLimitedQueue).toBeNull();
    expect((await runJson(run.id)).rateLimitWait).toBeNull();
    expect(await runPage(run.id)).not.toContain('waits for a GitHub rate limit');
  });


  it('waits for a 429 with retry-after', async () => {
    const { run, jobId } = await queuedAnalysis();
    // Octokit sends a 429 once: the retry plugin leaves it to the throttling plugin, which gives
    // up on a wait over a minute. A second queued 429 would reach the next job's request.
    setup.fake.queueResponse(secondaryRateLimitError('GET', pullPath, 900, 429));
    const before = Date.now();

    await runAnalyzeJob(jobId);

    const [next] = await laterJobs(analyzeQueue, run.id, jobId);
    expect(next).toBeDefined();
    expect(next!.state).toBe('created');
    const wait = new Date(next!.start_after).getTime() - before;
    expect(wait).toBeGreaterThanOrEqual(900_000);
    expect(wait).toBeLessThan(905_000);
    const pullReads = setup.fake.requests.filter(
      (request) => request.receivedAt >= before && /\/pulls\/\d+$/.test(request.path),
    );
    expect(pullReads).toHaveLength(1);
    expect(next!.data.rateLimitedSince).toBeGreaterThanOrEqual(before);
    const waiting = await storedRun(run.id);
    expect(waiting.status).toBe('analyzing');
    expect(waiting.error).toBeNull();
    expect(waiting.analyzeJobId).toBe(next!.id);
    expect(waiting.rateLimitedJobId).toBe(next!.id);
    expect(waiting.rateLimitedQueue).toBe('analyze');
    expect(waiting.rateLimitedUntil?.getTime()).toBe(new Date(next!.start_after).getTime());

    const until = waiting.rateLimitedUntil!.toISOString();
    const page = await runPage(run.id);
    expect(page).toContain('The analysis waits for a GitHub rate limit on this installation until');
    expect(page).toContain(`datetime="${until}"`);
    expect((await runJson(run.id)).rateLimitWait).toEqual({ job: 'analyze', until });
    // Past its time, the wait is only for a worker to take the job.
    const lifted = new Date(Date.now() - 60_000);
    await setup.context.db.update(prRuns).set({ rateLimitedUntil: lifted }).where(eq(prRuns.id, run.id));
    expect(await runPage(run.id)).toContain(
      `The analysis waited for a GitHub rate limit on this installation until <time datetime="${lifted.toISOString()}"`,
    );
    expect(await runPage(run.id)).toContain(', and continues as soon as a worker takes its job.');

    await runAnalyzeJob(next!.id);

    const analyzed = await storedRun(run.id);
    expect(analyzed.status).toBe('completed');
    expect(analyzed.rateLimitedUntil).toBeNull();
    expect(analyzed.rateLimitedJobId).toBeNull();
    const rows = await setup.context.db.select().from(findings).where(eq(findings.runId, run.id));
    expect(rows.map((row) => row.ruleId)).toContain('debug/console-log');
    expect(await runPage(run.id)).not.toContain('waits for a GitHub rate limit');
    expect((await runJson(run.id)).rateLimitWait).toBeNull();
  }, 30_000);

  it('waits for a primary limit to reset', async () => {
    const { run, jobId } = await queuedAnalysis();
    const resetSeconds = Math.floor(Date.now() / 1000) + 20 * 60;
    setup.fake.queueResponse(primaryRateLimitError('GET', pullPath, resetSeconds));

    await runAnalyzeJob(jobId);

    const [next] = await laterJobs(analyzeQueue, run.id, jobId);
    expect(next).toBeDefined();
    expect(new Date(next!.start_after).getTime()).toBe((resetSeconds + 1) * 1000);
    expect((await storedRun(run.id)).rateLimitedUntil?.getTime()).toBe((resetSeconds + 1) * 1000);
  });

  it('fails past the maximum wait', async () => {
    // An analysis rate-limited since 50 minutes ago, whose limit lifts in another 15.
    const { run, jobId } = await queuedAnalysis({ rateLimitedSince: Date.now() - 50 * 60_000 });
    setup.fake.queueResponse(secondaryRateLimitError('GET', pullPath, 15 * 60));

    await runAnalyzeJob(jobId);

    expect(await laterJobs(analyzeQueue, run.id, jobId)).toEqual([]);
    const job = await setup.context.boss.getJobById(analyzeQueue, jobId);
    expect(job!.state).toBe('completed');
    const failed = await storedRun(run.id);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(
      /^Analysis failed: GitHub rate-limited the installation until \S+, later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS \(3600 s\) after the first rate-limited response allows\. Try again after that time\.$/,
    );
    expect(failed.rateLimitedUntil).toBeNull();
    const page = await runPage(run.id);
    expect(page).toContain('Analysis failed: GitHub rate-limited the installation until');
    expect(page).not.toContain('waits for a GitHub rate limit');
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.analyze.rate_limit_too_long' && line.jobId === jobId,
    );
    expect(logged?.maxWaitSeconds).toBe(maxWaitSeconds);
  });

  it('queues nothing after its job is cancelled', async () => {
    const { run, jobId } = await queuedAnalysis();
    // A suspend cancels the run and its job, and an unsuspend follows before the job queues
    // its successor.
    onPullRequestRead = async () => {
      await setup.context.db.transaction((tx) =>
        cancelInstallationWork(tx, setup.context.boss, setup.installationId, 'Suspended in a test.'),
      );
    };

    await runAnalyzeJob(jobId);

    expect(await laterJobs(analyzeQueue, run.id, jobId)).toEqual([]);
    const cancelled = await storedRun(run.id);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.analyzeJobId).toBe(jobId);
    expect(cancelled.rateLimitedUntil).toBeNull();
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.analyze.completed' && line.jobId === jobId,
    );
    expect(logged?.reason).toBe('run is cancelled');
  });

  it('leaves the run to a newer analyze job', async () => {
    const { run, jobId } = await queuedAnalysis();
    let newerJobId: string | null = null;
    // A new delivery queues the run again while the job reads the pull request.
    onPullRequestRead = async () => {
      newerJobId = (await setup.context.boss.send(analyzeQueue, { runId: run.id }, { startAfter: 3600 }))!;
      await setup.context.db.update(prRuns).set({ analyzeJobId: newerJobId }).where(eq(prRuns.id, run.id));
    };

    await runAnalyzeJob(jobId);

    const later = await laterJobs(analyzeQueue, run.id, jobId);
    expect(later.map((job) => job.id)).toEqual([newerJobId]);
    expect((await storedRun(run.id)).analyzeJobId).toBe(newerJobId);
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.analyze.completed' && line.jobId === jobId,
    );
    expect(logged?.reason).toBe(`analyze job ${newerJobId} works on the run`);
  });
});

describe('fix press notice job under a long rate limit', () => {
  it('writes the notice once after the wait', async () => {
    const { run } = await queuedAnalysis();
    await setup.context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, run.id));
    await insertFindings(setup.context, run.id, [{ path: 'src/app.ts', line: 2, severity: 'warning' }]);
    await reportRun(setup.context, run.id, setup.context.logger);
    const checkRunId = (await storedRun(run.id)).checkRunId!;
    expect(checkRunId).not.toBeNull();
    const data: FixPressNoticeJobData = {
      runId: run.id,
      checkRunId,
      pressedAt: Date.now(),
      sender: 'octoreviewer',
      notice: { kind: 'no_findings' },
    };
    const jobId = (await setup.context.boss.send(fixPressNoticeQueue, data))!;
    // The read of the check run passes, and the update is rate-limited.
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', checkRunPath, 600));
    const since = setup.fake.requests.length;
    const before = Date.now();

    await runNoticeJob(jobId);

    const [next] = await laterJobs(fixPressNoticeQueue, run.id, jobId);
    expect(next).toBeDefined();
    const wait = new Date(next!.start_after).getTime() - before;
    expect(wait).toBeGreaterThanOrEqual(600_000);
    expect(wait).toBeLessThan(610_000);
    const checkRun = () => setup.fake.checkRuns.find((candidate) => candidate.id === checkRunId)!;
    expect(checkRun().output.text ?? '').not.toContain('### Fix with AI');
    const page = await runPage(run.id);
    expect(page).toContain(
      'Showing the &quot;Fix with AI&quot; press on the check run waits for a GitHub rate limit',
    );
    expect((await runJson(run.id)).rateLimitWait).toEqual({
      job: fixPressNoticeQueue,
      until: new Date(next!.start_after).toISOString(),
    });

    await runNoticeJob(next!.id);

    const updates = setup.fake.requests
      .slice(since)
      .filter((request) => request.method === 'PATCH' && request.path.endsWith(`/check-runs/${checkRunId}`));
    // The rate-limited update and the one after the wait.
    expect(updates).toHaveLength(2);
    const text = checkRun().output.text ?? '';
    expect(text.split('### Fix with AI')).toHaveLength(2);
    expect(text).toContain('Pressed by octoreviewer at');
    expect((await storedRun(run.id)).rateLimitedUntil).toBeNull();
    expect((await runJson(run.id)).rateLimitWait).toBeNull();
  });
});
