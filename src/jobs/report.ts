import { ConfigError } from '../config/env.ts';
import { eq, sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { AppContext } from '../context.ts';
import { prRuns } from '../db/schema/index.ts';
import {
  asInstallationUnavailable,
  findInstallationUnavailable,
  recordInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import type { Logger } from '../logger.ts';
import { recordReportError, reportRun } from '../report/report-run.ts';
import { transactionDb } from './boss.ts';

export const reportQueue = 'report';

export const reportJobData = z.object({
  runId: z.uuid(),
  /**
   * Time in milliseconds since 1970 of the first rate-limited response of this report, set on
   * the jobs that wait for a rate limit to lift.
   */
  rateLimitedSince: z.number().int().nonnegative().optional(),
});
export type ReportJobData = z.infer<typeof reportJobData>;

export const reportQueueOptions = {
  retryLimit: 4,
  retryDelay: 10,
  retryBackoff: true,
  expireInSeconds: 10 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/**
 * Posts a completed run's check run and summary comment. An installation that is suspended or
 * uninstalled ends the job at once with the reason stored on the run, because retries cannot
 * succeed. A GitHub rate limit ends the job and queues the next attempt for when the limit
 * lifts (see `queueAfterRateLimit`).
 */
export async function handleReportJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<ReportJobData>,
): Promise<void> {
  const data = reportJobData.parse(job.data);
  const { runId } = data;
  const logger = context.logger.child({ jobId: job.id, runId, queue: reportQueue });
  const startedAt = Date.now();
  try {
    const outcome = await reportRun(context, runId, logger, { jobId: job.id });
    logger.info(
      { event: 'job.report.completed', durationMs: Date.now() - startedAt, ...outcome },
      'report finished',
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      // Missing credentials will still be missing on a retry; fail now with what to set.
      await recordReportError(context.db, runId, error, { jobId: job.id });
      logger.warn(
        { event: 'job.report.not_configured', reason: error.message },
        'report stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      await recordInstallationUnavailable(context.db, unavailable);
      await stopForUnavailableInstallation(context, job.id, runId, unavailable, logger);
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = asGitHubRateLimit(error);
    if (rateLimit) {
      let queued: boolean;
      try {
        queued = await queueAfterRateLimit(context, job.id, data, rateLimit, error, logger);
      } catch (queueError) {
        // The transaction that queues the next job rolled back, so the run still names this
        // job, and pg-boss retries it unless this was the last attempt. The stored report error
        // names the rate limit, because a failed query's own message quotes the query.
        logger.error(
          {
            event: 'job.report.failed',
            err: queueError,
            rateLimit: rateLimit.kind,
            liftsAt: new Date(rateLimit.liftsAt).toISOString(),
            attempt: job.retryCount,
            finalAttempt,
          },
          'report failed: queueing the report job for after the GitHub rate limit failed',
        );
        if (finalAttempt) await recordReportError(context.db, runId, error, { jobId: job.id });
        throw queueError;
      }
      if (queued) return;
    }
    logger.error(
      { event: 'job.report.failed', err: error, attempt: job.retryCount, finalAttempt },
      'report failed',
    );
    if (finalAttempt) await recordReportError(context.db, runId, error, { jobId: job.id });
    throw error;
  }
}

async function stopForUnavailableInstallation(
  context: AppContext,
  jobId: string,
  runId: string,
  unavailable: InstallationUnavailableError,
  logger: Logger,
): Promise<void> {
  await recordReportError(context.db, runId, unavailable, { jobId });
  logger.warn(
    {
      event: 'job.report.stopped',
      installationId: unavailable.installationId,
      reason: unavailable.reason,
    },
    'report stopped: the installation is unavailable',
  );
}

/**
 * Queues a new report job of the run that starts when the rate limit lifts, and stores its id
 * on the run, so a suspend or uninstall cancels it. The job that hit the limit then completes,
 * so no worker waits. Returns false, and queues nothing, when the limit lifts more than
 * REPORT_RATE_LIMIT_MAX_WAIT_SECONDS after the report's first rate-limited response. The caller
 * then fails the job as for any other error.
 *
 * Nothing is queued either when job `jobId` no longer reports the run: the run is no longer
 * completed, or it names another report job, which an analysis of the run queued meanwhile.
 * That job reports, and the run keeps its id, so a suspend still cancels it. A job that was
 * cancelled, as a suspend does, queues nothing even when the app was unsuspended since.
 *
 * Before each creating write, the report looks on GitHub for what an earlier attempt created,
 * so the new job does not repeat a write that already took effect.
 */
async function queueAfterRateLimit(
  context: AppContext,
  jobId: string,
  data: ReportJobData,
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
): Promise<boolean> {
  const now = Date.now();
  const since = data.rateLimitedSince ?? now;
  const maxWaitMs = context.config.REPORT_RATE_LIMIT_MAX_WAIT_SECONDS * 1000;
  const fields = {
    rateLimit: rateLimit.kind,
    liftsAt: new Date(rateLimit.liftsAt).toISOString(),
    rateLimitedSince: new Date(since).toISOString(),
  };
  if (maxWaitMs === 0 || rateLimit.liftsAt - since > maxWaitMs) {
    logger.warn(
      { event: 'job.report.rate_limit_too_long', ...fields, err: error },
      'GitHub rate limit lifts later than REPORT_RATE_LIMIT_MAX_WAIT_SECONDS allows, so the report fails',
    );
    return false;
  }

  const outcome = await queueNextReportJob(context, jobId, {
    runId: data.runId,
    rateLimitedSince: since,
    startAfter: new Date(rateLimit.liftsAt),
  });

  if (outcome.kind === 'gone') {
    logger.info(
      { event: 'job.report.completed', status: 'skipped', reason: 'run no longer exists' },
      'report skipped: the run was deleted while GitHub rate-limited it',
    );
  } else if (outcome.kind === 'replaced') {
    logger.info(
      { event: 'job.report.completed', status: 'skipped', reason: outcome.reason, ...fields },
      'report skipped: GitHub rate-limited it, and the run changed meanwhile',
    );
  } else if (outcome.kind === 'unavailable') {
    await stopForUnavailableInstallation(context, jobId, data.runId, outcome.unavailable, logger);
  } else {
    logger.warn(
      { event: 'job.report.rate_limited', ...fields, nextJobId: outcome.jobId, err: error },
      'GitHub rate-limited the report, which continues in a new job when the limit lifts',
    );
  }
  return true;
}

type QueueOutcome =
  | { kind: 'gone' }
  | { kind: 'unavailable'; unavailable: InstallationUnavailableError }
  | { kind: 'replaced'; reason: string }
  | { kind: 'queued'; jobId: string | null };

/**
 * Queues the run's next report job in one transaction with the checks that job `jobId` still
 * reports the run and that its installation is active, and stores the new job's id on the run.
 */
async function queueNextReportJob(
  context: AppContext,
  jobId: string,
  next: { runId: string; rateLimitedSince: number; startAfter: Date },
): Promise<QueueOutcome> {
  const { runId, startAfter } = next;
  return context.db.transaction(async (tx): Promise<QueueOutcome> => {
    const [run] = await tx
      .select({ installationId: prRuns.installationId })
      .from(prRuns)
      .where(eq(prRuns.id, runId));
    if (!run) return { kind: 'gone' };

    // Locks the installation's row, so a suspend or uninstall either comes first and is seen
    // here, or waits for this commit and then cancels the new job.
    const unavailable = await findInstallationUnavailable(tx, run.installationId);
    if (unavailable) return { kind: 'unavailable', unavailable };

    // Locks the run's row after the installation's, in the order a suspend locks them. An
    // analysis that completes the run again and stores its new report job either comes first
    // and is seen here, or waits for this commit, then replaces the new job's id and cancels it.
    const [current] = await tx
      .select({ status: prRuns.status, reportJobId: prRuns.reportJobId })
      .from(prRuns)
      .where(eq(prRuns.id, runId))
      .for('update');
    if (!current) return { kind: 'gone' };
    if (current.status !== 'completed') return { kind: 'replaced', reason: `run is ${current.status}` };
    if (current.reportJobId !== null && current.reportJobId !== jobId) {
      return { kind: 'replaced', reason: `report job ${current.reportJobId} reports the run` };
    }
    // A suspend cancels this job while it runs. After an unsuspend the installation check
    // above passes, so the job's own state shows that it was cancelled.
    const [job] = await tx.execute<{ state: string }>(
      sql`SELECT state FROM pgboss.job WHERE name = ${reportQueue} AND id = ${jobId}`,
    );
    if (job?.state === 'cancelled') return { kind: 'replaced', reason: `report job ${jobId} was cancelled` };

    const data: ReportJobData = { runId, rateLimitedSince: next.rateLimitedSince };
    const nextJobId = await context.boss.send(reportQueue, data, { startAfter, db: transactionDb(tx) });
    await tx.update(prRuns).set({ reportJobId: nextJobId }).where(eq(prRuns.id, runId));
    return { kind: 'queued', jobId: nextJobId };
  });
}
