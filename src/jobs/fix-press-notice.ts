import { eq, sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import { prRuns } from '../db/schema/index.ts';
import { githubId } from '../events/github-id.ts';
import {
  asInstallationUnavailable,
  findInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import { GitHubResponseTooLargeError } from '../github/responses.ts';
import type { Logger } from '../logger.ts';
import { fixPressNotice } from '../report/fix-press-notice.ts';
import {
  publishFixPressNotice,
  type FixPressNoticeOutcome,
} from '../report/publish-fix-press-notice.ts';
import { clearRunRateLimit, runWork } from '../runs/run-rate-limit.ts';
import { transactionDb } from './boss.ts';
import { fixPressNoticeQueue } from './fix-press-notice-queue.ts';
import {
  logRateLimitQueueFailure,
  queueAfterRateLimit,
  rateLimitedSince,
  rateLimitFields,
} from './rate-limit-wait.ts';
import { reportQueue } from './report.ts';

export { fixPressNoticeQueue };

export const fixPressNoticeJobData = z.object({
  runId: z.uuid(),
  checkRunId: githubId,
  pressedAt: z.number().int().nonnegative(),
  sender: z.string().nullable(),
  notice: fixPressNotice,
  rateLimitedSince,
  /**
   * Set on the job queued to wait for the run's report, which the report starts at once when it
   * stores its check run (see startNoticesWaitingForReport). Jobs that continue it leave it out.
   */
  waitsForReport: z.literal(true).optional(),
  /**
   * Time in milliseconds since 1970 when the notice first found the run without a check run
   * while its report was pending, from which the wait for the report is limited.
   */
  reportWaitSince: z.number().int().nonnegative().optional(),
});
export type FixPressNoticeJobData = z.infer<typeof fixPressNoticeJobData>;

export const fixPressNoticeQueueOptions = {
  retryLimit: 4,
  retryDelay: 10,
  retryBackoff: true,
  expireInSeconds: 5 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/**
 * Seconds after which a notice that waits for the run's report reads the run again. The
 * report starts it sooner when it stores its check run or its error (see recordReportError),
 * so this is a fallback for a report that ends without storing either. The value is the
 * report job's time limit, after which pg-boss retries an attempt whose worker died.
 */
export const reportWaitCheckSeconds = 10 * 60;

/**
 * Seconds on top of GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS after which a notice stops waiting for
 * the run's report. They cover the report job's 5 attempts of at most 10 minutes each and
 * pg-boss's retry delays between them (at most 300 s). NOTE: a report that takes longer, such
 * as one that waits for a free worker or for several rate limits, stores its check run after
 * the notice was skipped, so that press shows no notice.
 */
const reportWaitMarginSeconds = 60 * 60;

/** pg-boss states of a job that has not finished. */
const pendingJobStates = ['created', 'retry', 'active'];

/**
 * Shows the outcome of a "Fix with AI" press on the run's check run. Missing credentials, a
 * suspended or uninstalled installation and a GitHub response over the size limit end the job
 * at once, because retries cannot succeed. A GitHub rate limit ends the job and queues the next
 * attempt for when the limit lifts (see `waitForRateLimit`).
 */
export async function handleFixPressNoticeJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<FixPressNoticeJobData>,
): Promise<void> {
  // A rate-limited job's successor must not be started early by the report, so only the job
  // queued to wait for the report keeps the mark.
  const data: FixPressNoticeJobData = {
    ...fixPressNoticeJobData.parse(job.data),
    waitsForReport: undefined,
  };
  const logger = context.logger.child({
    jobId: job.id,
    runId: data.runId,
    checkRunId: data.checkRunId,
    queue: fixPressNoticeQueue,
  });
  try {
    await clearRunRateLimit(context.db, data.runId, job.id);
    const noticeJob = { queue: fixPressNoticeQueue, id: job.id };
    const outcome = await publishFixPressNotice(
      context,
      {
        ...data,
        job: noticeJob,
        deferUntilReported: (run) => deferUntilReported(context, job.id, data, run, logger),
      },
      logger,
    );
    logger.info(
      { event: 'job.fix_press_notice.completed', notice: data.notice.kind, ...outcome },
      'fix press notice finished',
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.warn(
        { event: 'job.fix_press_notice.not_configured', reason: error.message },
        'fix press notice stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      // The notice stores nothing, so the log line carries the message that names the account.
      const recorded = await recordInstallationUnavailable(context.db, unavailable);
      logger.warn(
        {
          event: 'job.fix_press_notice.stopped',
          installationId: recorded.installationId,
          reason: recorded.reason,
          error: recorded.message,
        },
        'fix press notice stopped: the installation is unavailable',
      );
      return;
    }
    if (error instanceof GitHubResponseTooLargeError) {
      // The response would be as large on a retry. The notice stores nothing, so this log line
      // is the only record of why the check run keeps its earlier text.
      logger.error(
        { event: 'job.fix_press_notice.failed', err: error, attempt: job.retryCount, finalAttempt: true },
        'fix press notice failed: a GitHub response is larger than the limit',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = asGitHubRateLimit(error);
    if (rateLimit) {
      try {
        await waitForRateLimit(context, job.id, data, rateLimit, error, logger);
      } catch (queueError) {
        logRateLimitQueueFailure(logger, 'job.fix_press_notice', queueError, rateLimit, job);
        throw queueError;
      }
      return;
    }
    logger.error(
      { event: 'job.fix_press_notice.failed', err: error, attempt: job.retryCount, finalAttempt },
      'fix press notice failed',
    );
    throw error;
  }
}

/**
 * Queues a new notice job that starts when the rate limit lifts (see `queueAfterRateLimit`),
 * while the run is completed. The notice stores nothing of its own, so a limit that lifts later
 * than the maximum wait allows is only logged, and the check run keeps its earlier text.
 *
 * Writing the notice again does not show it twice: the update replaces the check run's `text`,
 * and the new job skips a notice older than the one the check run shows.
 */
async function waitForRateLimit(
  context: AppContext,
  jobId: string,
  data: FixPressNoticeJobData,
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
): Promise<void> {
  const job = { queue: fixPressNoticeQueue, id: jobId, data, event: 'job.fix_press_notice' };
  const work = runWork(data.runId, jobId, { queue: fixPressNoticeQueue, statuses: ['completed'] });
  const outcome = await queueAfterRateLimit(context, job, rateLimit, error, logger, work);
  if (outcome.kind === 'queued' || outcome.kind === 'too_long') return;
  logger.info(
    {
      event: 'job.fix_press_notice.completed',
      status: 'skipped',
      reason:
        outcome.kind === 'gone'
          ? 'run no longer exists'
          : outcome.kind === 'unavailable'
            ? outcome.unavailable.message
            : outcome.reason,
      ...rateLimitFields(rateLimit),
    },
    'fix press notice skipped: GitHub rate-limited it, and the run changed meanwhile',
  );
}

/**
 * Queues the notice again to wait for the run's report, when the report is pending: the run is
 * completed, stores no report error, and its report job has not finished. The report starts
 * the new job when it stores its check run or its error (see startNoticesWaitingForReport).
 * Otherwise the new job starts after `reportWaitCheckSeconds` and reads the run again. The
 * notice is skipped when the report is not pending, or after GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS
 * plus `reportWaitMarginSeconds` since it first waited. publishFixPressNotice calls this under
 * the report's lock, so the report cannot store its check run between the read of the run and
 * the new job.
 */
async function deferUntilReported(
  context: AppContext,
  jobId: string,
  data: FixPressNoticeJobData,
  run: { id: string; installationId: number },
  logger: Logger,
): Promise<FixPressNoticeOutcome> {
  const notStored = `check run ${data.checkRunId} is not stored yet`;
  const since = data.reportWaitSince ?? Date.now();
  const limitSeconds = context.config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS + reportWaitMarginSeconds;
  const deadline = since + limitSeconds * 1000;
  if (Date.now() > deadline) {
    const reason =
      `${notStored}, and the run's report did not store it within ${limitSeconds} s of the ` +
      'first wait';
    return { status: 'skipped', reason };
  }

  const outcome = await context.db.transaction(async (tx): Promise<FixPressNoticeOutcome> => {
    // Locks the installation's row, then the run's, in the order a suspend locks them. A
    // suspend, a new commit, a close or a base change thus either comes first and is seen here,
    // or waits for this commit and then cancels the new job.
    const unavailable = await findInstallationUnavailable(tx, run.installationId);
    if (unavailable) throw unavailable;
    const [current] = await tx.select().from(prRuns).where(eq(prRuns.id, run.id)).for('update');
    if (!current) return { status: 'skipped', reason: 'run no longer exists' };
    const [states] = await tx.execute<{ notice: string | null; report: string | null }>(sql`
      SELECT
        (SELECT state::text FROM pgboss.job
          WHERE name = ${fixPressNoticeQueue} AND id = ${jobId}) AS notice,
        (SELECT state::text FROM pgboss.job
          WHERE name = ${reportQueue} AND id = ${current.reportJobId}) AS report`);
    const skip = (reason: string): FixPressNoticeOutcome => ({ status: 'skipped', reason });
    // A job that is no longer active was cancelled by a new commit, a close, a base change or a
    // suspend.
    if (states?.notice !== 'active') {
      return skip(`notice job ${jobId} is ${states?.notice ?? 'gone'}`);
    }
    if (current.status !== 'completed') {
      return skip(`${notStored}, and the run is ${current.status}`);
    }
    if (current.reportJobId === null) return skip(`${notStored}, and the run has no report job`);
    // A stored report error ends the report, though pg-boss may not have ended its job yet.
    if (current.reportError !== null) {
      return skip(`${notStored}, and the run's report failed: ${current.reportError}`);
    }
    const reason =
      `${notStored}, and report job ${current.reportJobId} of the run is ` +
      `${states.report ?? 'gone'}`;
    if (!pendingJobStates.includes(states.report ?? '')) return skip(reason);

    // The wait for the report is no wait for a rate limit, so a later rate limit of the notice
    // gets a maximum wait of its own.
    const next: FixPressNoticeJobData = {
      ...data,
      rateLimitedSince: undefined,
      waitsForReport: true,
      reportWaitSince: since,
    };
    const checkAt = Math.min(Date.now() + reportWaitCheckSeconds * 1000, deadline + 1000);
    const nextJobId = await context.boss.send(fixPressNoticeQueue, next, {
      startAfter: new Date(checkAt),
      db: transactionDb(tx),
    });
    return { status: 'deferred', reason, nextJobId };
  });
  if (outcome.status === 'deferred') {
    logger.info(
      {
        event: 'fix_press_notice.deferred',
        checkRunId: data.checkRunId,
        reason: outcome.reason,
        nextJobId: outcome.nextJobId,
      },
      `fix press notice waits for the run's report, because ${outcome.reason}`,
    );
  }
  return outcome;
}
