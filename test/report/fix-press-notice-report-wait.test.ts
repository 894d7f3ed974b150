// A "Fix with AI" press on the check run that the run's report has created but not stored yet.
// GitHub shows the button as soon as the check run exists. So the press can come while the
// report waits for the create's response, or while a report job that was rate-limited after
// the create waits for its next attempt.
import { randomBytes, randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchRequests, prRuns, users } from '../../src/db/schema/index.ts';
import { secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import {
  fixPressNoticeQueue,
  handleFixPressNoticeJob,
  reportWaitCheckSeconds,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { cleanUpInterruptedJobs } from '../../src/jobs/recover-jobs.ts';
import { handleReportJob, reportQueue, type ReportJobData } from '../../src/jobs/report.ts';
import { reportRun } from '../../src/report/report-run.ts';
import { createApp } from '../../src/web/app.tsx';
import { logsOf } from '../helpers/context.ts';
import {
  fixPressWebhooks,
  listNoticeJobs,
  queuedPreviewText,
  type NoticeJobRow,
} from '../helpers/fix-press.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertWarnedRun,
  prNumber,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

const secret = 'fix-press-report-wait-secret';
const publicUrl = 'https://fixwright.example.test';
const listPath = '/repos/:owner/:repo/commits/:ref/check-runs';
/** The note that a notice on a check run of a failed report ends with. */
const reportFailedNote =
  "Posting this commit's results to GitHub failed, so this check run may lack annotations, and " +
  'the pull request may lack the Fixwright summary comment.';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let ownerId: string;
/** While set, the fake creates a check run and delays its response until this resolves. */
let createGate: Promise<void> | null = null;
/**
 * Check run creates whose response the fake replaces with a 502 after it created the check
 * run. The report's lookup of the check run that follows then gets a 600 s rate limit.
 */
let createsToLose = 0;

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
    // A platform key, so that the owner's allowance pays for the preview.
    env: { WEBHOOK_SECRET: secret, PUBLIC_URL: publicUrl, GROQ_API_KEY: 'gsk_report_wait' },
  });
  const [owner] = await setup.context.db.insert(users).values({ login: 'wait-owner' }).returning();
  ownerId = owner!.id;
  await insertInstallation(setup.context, { id: setup.installationId, userId: ownerId });
  app = createApp(setup.context);
  const create = checkRoutes.find(
    (route) => route.method === 'POST' && route.pattern.endsWith('/check-runs'),
  )!;
  setup.fake.addRoute({
    ...create,
    async handle(context) {
      const response = await create.handle(context);
      if (createGate) await createGate;
      if (createsToLose === 0) return response;
      createsToLose -= 1;
      // Octokit sends a 429 once and gives up on a wait over a minute, so the report job ends
      // and queues its next attempt for when the limit lifts.
      setup.fake.queueResponse(secondaryRateLimitError('GET', listPath, 600, 429));
      return { status: 502, body: { message: 'Server Error' } };
    },
  });
});

afterAll(async () => {
  await setup?.close();
});

const webhooks = fixPressWebhooks({
  setup: () => setup,
  app: () => app,
  secret,
  prefix: 'fix-press-report-wait',
});

const noticeJobs = (runId: string) => listNoticeJobs(setup.context, runId);

/** Creates a completed run with one warning on a new head commit, and queues its report job. */
async function completedRun() {
  const run = await insertWarnedRun(setup, 1);
  const data: ReportJobData = { runId: run.id };
  const reportJobId = (await setup.context.boss.send(reportQueue, data))!;
  await setup.context.db.update(prRuns).set({ reportJobId }).where(eq(prRuns.id, run.id));
  return { run, reportJobId };
}

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

/** Returns the fake's check runs of the run, oldest first. */
function checkRunsOf(runId: string) {
  return setup.fake.checkRuns.filter((checkRun) => checkRun.externalId.startsWith(runId));
}

const runReportJob = (jobId: string) =>
  runDueJob<ReportJobData>(setup.context, reportQueue, jobId, (job) =>
    handleReportJob(setup.context, job),
  );

const runNoticeJob = (jobId: string) =>
  runDueJob<FixPressNoticeJobData>(setup.context, fixPressNoticeQueue, jobId, (job) =>
    handleFixPressNoticeJob(setup.context, job),
  );

/** Runs the run's notice jobs that are due now, as a worker would, one at a time. */
async function runDueNoticeJobs(runId: string) {
  const due = (await noticeJobs(runId)).filter((job) => job.state === 'created' && job.waitMs <= 0);
  for (const job of due) await runNoticeJob(job.id);
}

/** Runs the report job's attempt that creates the check run and is then rate-limited. */
async function reportUntilRateLimited(runId: string, reportJobId: string) {
  createsToLose = 1;
  await runReportJob(reportJobId);
  expect(createsToLose).toBe(0);
  const waiting = await storedRun(runId);
  expect(waiting.checkRunId).toBeNull();
  expect(waiting.reportJobId).not.toBe(reportJobId);
  const [checkRun] = checkRunsOf(runId);
  expect(checkRun).toBeDefined();
  return { checkRun: checkRun!, nextReportJobId: waiting.reportJobId! };
}

/** Returns the one completion log line of notice job `jobId`. */
function completionOf(jobId: string) {
  const lines = logsOf(setup.context, 'job.fix_press_notice.completed', { jobId });
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

async function patchRequestOf(runId: string) {
  const requests = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.runId, runId));
  expect(requests).toHaveLength(1);
  return requests[0]!;
}

async function jobState(queue: string, jobId: string) {
  return (await setup.context.boss.getJobById(queue, jobId))?.state;
}

/**
 * Creates a completed run whose report job created the check run and was then rate-limited,
 * presses on that check run with the owner's allowance free, and runs the notice job. Returns
 * them once the notice job deferred to a waiting job, with the time before the press.
 */
async function deferredPress() {
  await setup.context.db.update(users).set({ tokensUsed: 0 }).where(eq(users.id, ownerId));
  const { run, reportJobId } = await completedRun();
  const { checkRun, nextReportJobId } = await reportUntilRateLimited(run.id, reportJobId);
  const before = Date.now();
  await webhooks.press(checkRun.id);
  const [job] = await noticeJobs(run.id);
  expect(job!.data.notice.kind).toBe('queued');

  await runNoticeJob(job!.id);

  const completed = completionOf(job!.id);
  expect(completed.status).toBe('deferred');
  const [, waiting] = await noticeJobs(run.id);
  expect(waiting).toBeDefined();
  expect(completed.nextJobId).toBe(waiting!.id);
  return { run, checkRun, nextReportJobId, job: job!, waiting: waiting!, before };
}

describe('fix press notice before the report stores its check run', () => {
  it('waits for the report that is creating it', async () => {
    const { run, reportJobId } = await completedRun();
    let openGate = () => {};
    createGate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    try {
      // The report creates the check run and waits for GitHub's response under its lock.
      const report = runReportJob(reportJobId);
      let checkRun = checkRunsOf(run.id)[0];
      for (let waited = 0; !checkRun && waited < 10_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        checkRun = checkRunsOf(run.id)[0];
      }
      expect(checkRun).toBeDefined();
      await webhooks.press(checkRun!.id);
      const [job] = await noticeJobs(run.id);

      const notice = runNoticeJob(job!.id);
      await waitForLockWait(setup.context);
      expect((await storedRun(run.id)).checkRunId).toBeNull();
      openGate();
      await report;
      await notice;

      expect((await storedRun(run.id)).checkRunId).toBe(checkRun!.id);
      expect(completionOf(job!.id).status).toBe('updated');
      const request = await patchRequestOf(run.id);
      expect(checkRun!.output.text).toBe(queuedPreviewText(job!.data, publicUrl, request.id));
      expect(checkRun!.annotations).toHaveLength(1);
      expect(checkRunsOf(run.id)).toHaveLength(1);
    } finally {
      openGate();
      createGate = null;
    }
  });

  it('shows the notice once a rate-limited report stores it', async () => {
    await setup.context.db.update(users).set({ tokensUsed: 0 }).where(eq(users.id, ownerId));
    const { run, reportJobId } = await completedRun();
    const { checkRun, nextReportJobId } = await reportUntilRateLimited(run.id, reportJobId);

    await webhooks.press(checkRun.id);
    const [pressed] = await noticeJobs(run.id);
    await runDueNoticeJobs(run.id);
    await runReportJob(nextReportJobId);
    await runDueNoticeJobs(run.id);

    const request = await patchRequestOf(run.id);
    expect(checkRun.output.text).toBe(queuedPreviewText(pressed!.data, publicUrl, request.id));
    expect(checkRun.annotations).toHaveLength(1);
  });

  it('waits for a rate-limited report in a new job', async () => {
    const { run, checkRun, nextReportJobId, job, waiting, before } = await deferredPress();

    expect(checkRun.output.text).toBeNull();
    expect(waiting.state).toBe('created');
    expect(waiting.data.waitsForReport).toBe(true);
    expect(waiting.data.reportWaitSince).toBeGreaterThanOrEqual(before);
    expect(waiting.data.notice).toEqual(job.data.notice);
    expect(waiting.waitMs).toBeGreaterThan(reportWaitCheckSeconds * 1000 - 10_000);
    expect(waiting.waitMs).toBeLessThanOrEqual(reportWaitCheckSeconds * 1000);
    const deferred = logsOf(setup.context, 'fix_press_notice.deferred', { jobId: job.id });
    expect(deferred).toHaveLength(1);
    expect(deferred[0]!.reason).toBe(
      `check run ${checkRun.id} is not stored yet, and report job ${nextReportJobId} of the run ` +
        'is created',
    );

    await runReportJob(nextReportJobId);

    expect((await storedRun(run.id)).checkRunId).toBe(checkRun.id);
    expect(checkRunsOf(run.id)).toHaveLength(1);
    expect(await jobState(fixPressNoticeQueue, waiting.id)).toBe('cancelled');
    const jobs = await noticeJobs(run.id);
    expect(jobs).toHaveLength(3);
    const started = jobs[2]!;
    expect(started.state).toBe('created');
    expect(started.waitMs).toBeLessThanOrEqual(0);
    expect(started.data.waitsForReport).toBeUndefined();
    expect(started.data.notice).toEqual(job.data.notice);
    expect(started.data.pressedAt).toBe(job.data.pressedAt);
    const startedLogs = logsOf(setup.context, 'report.fix_press_notices_started', {
      runId: run.id,
    });
    expect(startedLogs).toHaveLength(1);
    expect(startedLogs[0]!.noticeJobIds).toEqual([started.id]);

    await runNoticeJob(started.id);

    expect(completionOf(started.id).status).toBe('updated');
    const request = await patchRequestOf(run.id);
    expect(checkRun.output.text).toBe(queuedPreviewText(job.data, publicUrl, request.id));
    expect(checkRun.annotations).toHaveLength(1);
  });

  it('checks again at its fallback time', async () => {
    const { run, checkRun, nextReportJobId, waiting } = await deferredPress();

    // The fallback time passes while the report still waits for the rate limit.
    await runNoticeJob(waiting.id);

    const again = completionOf(waiting.id);
    expect(again.status).toBe('deferred');
    const jobs = await noticeJobs(run.id);
    expect(jobs).toHaveLength(3);
    const next = jobs[2]!;
    expect(again.nextJobId).toBe(next.id);
    expect(next.data.waitsForReport).toBe(true);
    expect(next.data.reportWaitSince).toBe(waiting.data.reportWaitSince);
    expect(checkRun.output.text).toBeNull();

    await runReportJob(nextReportJobId);
    const started = (await noticeJobs(run.id))[3]!;
    await runNoticeJob(started.id);

    expect(completionOf(started.id).status).toBe('updated');
    expect(checkRun.output.text).toContain('Preview queued for 1 file.');
  });

  it('stops waiting after its time limit', async () => {
    const { run, reportJobId } = await completedRun();
    const { checkRun } = await reportUntilRateLimited(run.id, reportJobId);
    const limitSeconds = setup.context.config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS + 3600;
    const data: FixPressNoticeJobData = {
      runId: run.id,
      checkRunId: checkRun.id,
      pressedAt: Date.now(),
      sender: null,
      notice: { kind: 'no_owner' },
      waitsForReport: true,
      reportWaitSince: Date.now() - limitSeconds * 1000 - 1000,
    };
    const jobId = (await setup.context.boss.send(fixPressNoticeQueue, data, { startAfter: 3600 }))!;

    await runNoticeJob(jobId);

    const completed = completionOf(jobId);
    expect(completed.status).toBe('skipped');
    expect(completed.reason).toBe(
      `check run ${checkRun.id} is not stored yet, and the run's report did not store it ` +
        `within ${limitSeconds} s of the first wait`,
    );
    expect(await noticeJobs(run.id)).toHaveLength(1);
    expect(checkRun.output.text).toBeNull();
  });

  it('writes the notice after a failed report', async () => {
    const { run, checkRun, nextReportJobId, job, waiting } = await deferredPress();
    // The report's next attempt is its last, and GitHub rejects its lookup of the check run.
    await setup.context.database.sql`UPDATE pgboss.job SET retry_limit = 0 WHERE id = ${nextReportJobId}`;
    setup.fake.queueResponse({
      method: 'GET',
      path: listPath,
      status: 403,
      body: { message: 'Resource not accessible by integration' },
    });
    let reportFailure: unknown;
    let started: NoticeJobRow | undefined;

    // The notice runs after the report stored its error and before pg-boss failed its job.
    const thrown = await runDueJob<ReportJobData>(setup.context, reportQueue, nextReportJobId, async (reportJob) => {
      reportFailure = await handleReportJob(setup.context, reportJob).catch((error: unknown) => error);
      expect(await jobState(reportQueue, nextReportJobId)).toBe('active');
      started = (await noticeJobs(run.id))[2];
      expect(started).toBeDefined();
      await runNoticeJob(started!.id);
      throw reportFailure;
    }).catch((error: unknown) => error);

    expect(reportFailure).toBeInstanceOf(Error);
    expect(thrown).toBe(reportFailure);
    expect(await jobState(reportQueue, nextReportJobId)).toBe('failed');
    const { reportError } = await storedRun(run.id);
    expect(reportError).toMatch(/^Posting the results to GitHub failed: GitHub returned 403 /);
    expect(await jobState(fixPressNoticeQueue, waiting.id)).toBe('cancelled');
    expect(started!.waitMs).toBeLessThanOrEqual(0);
    expect(started!.data.notice).toEqual(job.data.notice);
    const startedLogs = logsOf(setup.context, 'report.fix_press_notices_started', { runId: run.id });
    expect(startedLogs).toMatchObject([{ noticeJobIds: [started!.id], reason: 'report_failed' }]);
    const completed = completionOf(started!.id);
    expect(completed.status).toBe('updated');
    expect(completed.reportFailed).toBe(true);
    expect(await noticeJobs(run.id)).toHaveLength(3);
    const request = await patchRequestOf(run.id);
    expect(checkRun.output.text).toBe(
      `${queuedPreviewText(job.data, publicUrl, request.id)}\n\n${reportFailedNote}`,
    );
    expect((await storedRun(run.id)).checkRunId).toBeNull();
  });

  it('writes the notice after a stopped report', async () => {
    const { run, checkRun, nextReportJobId, job, waiting } = await deferredPress();
    // pg-boss failed the report job's last attempt when the service stopped during it.
    await setup.context.database.sql`UPDATE pgboss.job SET retry_limit = 0 WHERE id = ${nextReportJobId}`;
    await setup.context.database.sql`
      UPDATE pgboss.job SET start_after = now() WHERE id = ${nextReportJobId}`;
    const fetched = await setup.context.boss.fetch(reportQueue, { batchSize: 10 });
    expect(fetched.map((fetchedJob) => fetchedJob.id)).toEqual([nextReportJobId]);
    await setup.context.boss.fail(reportQueue, nextReportJobId);

    await cleanUpInterruptedJobs(setup.context, [{ id: nextReportJobId, attempt: 0 }]);

    const { reportError } = await storedRun(run.id);
    expect(reportError).toBe('Posting the results to GitHub failed: The service stopped while it ran.');
    expect(await jobState(fixPressNoticeQueue, waiting.id)).toBe('cancelled');
    const started = (await noticeJobs(run.id))[2]!;
    expect(started.waitMs).toBeLessThanOrEqual(0);
    expect(logsOf(setup.context, 'report.fix_press_notices_started', { runId: run.id })).toMatchObject([
      { noticeJobIds: [started.id], reason: 'report_failed', jobId: nextReportJobId },
    ]);

    await runNoticeJob(started.id);

    expect(completionOf(started.id)).toMatchObject({ status: 'updated', reportFailed: true });
    const request = await patchRequestOf(run.id);
    expect(checkRun.output.text).toBe(
      `${queuedPreviewText(job.data, publicUrl, request.id)}\n\n${reportFailedNote}`,
    );
  });

  it('skips a check run of another analysis after a failed report', async () => {
    const { run, reportJobId } = await completedRun();
    await runReportJob(reportJobId);
    const earlier = checkRunsOf(run.id)[0]!;
    // The run was analyzed again, and that analysis's report failed before it created a check
    // run. The notice job of a press on the earlier check run runs only now.
    const reportError = 'Posting the results to GitHub failed: GitHub returned 403.';
    await setup.context.db
      .update(prRuns)
      .set({ analyzeJobId: randomUUID(), checkRunId: null, checkRunAnnotations: 0, reportError })
      .where(eq(prRuns.id, run.id));
    const data: FixPressNoticeJobData = {
      runId: run.id,
      checkRunId: earlier.id,
      pressedAt: Date.now(),
      sender: 'a-reviewer',
      notice: { kind: 'no_findings' },
    };
    const jobId = (await setup.context.boss.send(fixPressNoticeQueue, data))!;

    await runNoticeJob(jobId);

    const completed = completionOf(jobId);
    expect(completed.status).toBe('skipped');
    expect(completed.reason).toBe(
      `check run ${earlier.id} is not the check run of the run's analysis, whose report ` +
        `failed: ${reportError}`,
    );
    expect(earlier.output.text).toBeNull();
  });

  it('skips a press when no report is pending', async () => {
    const { run, reportJobId } = await completedRun();
    // The report's last attempt created the check run and failed before it stored the id.
    await reportRun(setup.context, run.id, setup.context.logger);
    await setup.context.db.update(prRuns).set({ checkRunId: null }).where(eq(prRuns.id, run.id));
    await setup.context.boss.cancel(reportQueue, reportJobId);
    const [checkRun] = checkRunsOf(run.id);

    await webhooks.press(checkRun!.id);
    const [job] = await noticeJobs(run.id);
    await runNoticeJob(job!.id);

    const completed = completionOf(job!.id);
    expect(completed.status).toBe('skipped');
    expect(completed.reason).toBe(
      `check run ${checkRun!.id} is not stored yet, and report job ${reportJobId} of the run ` +
        'is cancelled',
    );
    expect(await noticeJobs(run.id)).toHaveLength(1);
    expect(checkRun!.output.text).toBeNull();
  });

  it('redirects a press made during a new analysis', async () => {
    // The press came while the run was analyzed again. Its notice job runs after that analysis
    // completed and before the new report stored the new check run.
    const { run, reportJobId } = await completedRun();
    await runReportJob(reportJobId);
    const earlier = checkRunsOf(run.id)[0]!;
    const before = { ...earlier.output };
    const data: FixPressNoticeJobData = {
      runId: run.id,
      checkRunId: earlier.id,
      pressedAt: Date.now(),
      sender: 'a-reviewer',
      notice: { kind: 'run_not_completed', status: 'analyzing' },
    };
    const jobId = (await setup.context.boss.send(fixPressNoticeQueue, data))!;
    const newReportJobId = (await setup.context.boss.send(reportQueue, { runId: run.id }))!;
    await setup.context.db
      .update(prRuns)
      .set({
        analyzeJobId: randomUUID(),
        checkRunId: null,
        checkRunAnnotations: 0,
        reportJobId: newReportJobId,
      })
      .where(eq(prRuns.id, run.id));

    await runNoticeJob(jobId);
    expect(completionOf(jobId).status).toBe('deferred');
    await runReportJob(newReportJobId);
    const started = (await noticeJobs(run.id))[2]!;
    await runNoticeJob(started.id);

    const newer = (await storedRun(run.id)).checkRunId!;
    expect(newer).not.toBe(earlier.id);
    const completed = completionOf(started.id);
    expect(completed.status).toBe('redirected');
    expect(completed.newerCheckRunId).toBe(newer);
    expect(earlier.output.title).toBe(before.title);
    expect(earlier.output.summary).toBe(before.summary);
    expect(earlier.output.text).toContain(
      'Nothing was queued, because this commit was analyzed again, and the results of that ' +
        'analysis appear in [a newer Fixwright check run]' +
        `(https://github.test/octo-org/widgets/pull/${prNumber}/checks?check_run_id=${newer}).`,
    );
    const newest = setup.fake.checkRuns.find((candidate) => candidate.id === newer)!;
    expect(newest.output.text).toBeNull();
  });
});

describe('fix press notice that waits for the report of a run that changes', () => {
  it('is cancelled by a new commit', async () => {
    const { run, checkRun, nextReportJobId, waiting } = await deferredPress();

    await webhooks.pullRequestEvent(run.headSha, (payload) => {
      payload.action = 'synchronize';
      payload.pull_request.head.sha = randomBytes(20).toString('hex');
    });

    expect((await storedRun(run.id)).status).toBe('superseded');
    expect(await jobState(fixPressNoticeQueue, waiting.id)).toBe('cancelled');
    expect((await patchRequestOf(run.id)).status).toBe('cancelled');
    // The report job's next attempt finds the run superseded and stores nothing.
    await runReportJob(nextReportJobId);
    expect((await storedRun(run.id)).checkRunId).toBeNull();
    expect(await noticeJobs(run.id)).toHaveLength(2);
    expect(checkRun.output.text).toBeNull();
  });

  it('is cancelled by a suspend', async () => {
    const { run, checkRun, nextReportJobId, waiting } = await deferredPress();
    try {
      await webhooks.installationEvent('suspend');

      expect(await jobState(fixPressNoticeQueue, waiting.id)).toBe('cancelled');
      expect(await jobState(reportQueue, nextReportJobId)).toBe('cancelled');
      expect(await noticeJobs(run.id)).toHaveLength(2);
      expect(checkRun.output.text).toBeNull();
    } finally {
      await setup.context.database.sql`
        UPDATE installations SET suspended_at = NULL WHERE id = ${setup.installationId}`;
    }
  });
});
