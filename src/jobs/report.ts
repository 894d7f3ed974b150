import { ConfigError } from '../config/env.ts';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { AppContext } from '../context.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import { GitHubResponseTooLargeError } from '../github/responses.ts';
import type { Logger } from '../logger.ts';
import { recordReportError, reportRun } from '../report/report-run.ts';
import { clearRunRateLimit, runWork } from '../runs/run-rate-limit.ts';
import {
  logRateLimitQueueFailure,
  queueAfterRateLimit,
  rateLimitedSince,
  rateLimitFields,
} from './rate-limit-wait.ts';

export const reportQueue = 'report';

export const reportJobData = z.object({
  runId: z.uuid(),
  rateLimitedSince,
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
 * uninstalled, or a GitHub response over the size limit, ends the job at once with the reason
 * stored on the run, because retries cannot succeed. A GitHub rate limit ends the job and
 * queues the next attempt for when the limit lifts (see `waitForRateLimit`).
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
    await clearRunRateLimit(context.db, runId, job.id);
    const outcome = await reportRun(context, runId, logger, { jobId: job.id });
    logger.info(
      { event: 'job.report.completed', durationMs: Date.now() - startedAt, ...outcome },
      'report finished',
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      // Missing credentials will still be missing on a retry; fail now with what to set.
      await recordReportError(context, runId, error, logger, { jobId: job.id });
      logger.warn(
        { event: 'job.report.not_configured', reason: error.message },
        'report stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      const recorded = await recordInstallationUnavailable(context.db, unavailable);
      await stopForUnavailableInstallation(context, job.id, runId, recorded, logger);
      return;
    }
    if (error instanceof GitHubResponseTooLargeError) {
      // The response would be as large on a retry, so the report fails now.
      await recordReportError(context, runId, error, logger, { jobId: job.id });
      logger.error(
        { event: 'job.report.failed', err: error, attempt: job.retryCount, finalAttempt: true },
        'report failed: a GitHub response is larger than the limit',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = asGitHubRateLimit(error);
    if (rateLimit) {
      try {
        await waitForRateLimit(context, job.id, data, rateLimit, error, logger);
      } catch (queueError) {
        // The transaction that queues the next job rolled back, so the run still names this
        // job, and pg-boss retries it unless this was the last attempt. The stored report error
        // names the rate limit, because a failed query's own message quotes the query.
        logRateLimitQueueFailure(logger, 'job.report', queueError, rateLimit, job);
        if (finalAttempt) await recordReportError(context, runId, error, logger, { jobId: job.id });
        throw queueError;
      }
      return;
    }
    logger.error(
      { event: 'job.report.failed', err: error, attempt: job.retryCount, finalAttempt },
      'report failed',
    );
    if (finalAttempt) await recordReportError(context, runId, error, logger, { jobId: job.id });
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
  await recordReportError(context, runId, unavailable, logger, { jobId });
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
 * Queues a new report job of the run that starts when the rate limit lifts (see
 * `queueAfterRateLimit`). When the limit lifts later than the maximum wait allows, it stores
 * that as the report error instead, and the job ends without a retry.
 *
 * Nothing is queued either when job `jobId` no longer reports the run: the run is no longer
 * completed, or it names another report job, which an analysis of the run queued meanwhile.
 * That job reports, and the run keeps its id, so a suspend still cancels it.
 *
 * Before each creating write, the report looks on GitHub for what an earlier attempt created,
 * so the new job does not repeat a write that already took effect.
 */
async function waitForRateLimit(
  context: AppContext,
  jobId: string,
  data: ReportJobData,
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
): Promise<void> {
  const { runId } = data;
  const job = { queue: reportQueue, id: jobId, data, event: 'job.report' };
  const work = runWork(runId, jobId, {
    queue: reportQueue,
    statuses: ['completed'],
    jobColumn: 'reportJobId',
  });
  const outcome = await queueAfterRateLimit(context, job, rateLimit, error, logger, work);

  if (outcome.kind === 'too_long') {
    await recordReportError(context, runId, outcome.error, logger, { jobId });
  } else if (outcome.kind === 'gone') {
    logger.info(
      { event: 'job.report.completed', status: 'skipped', reason: 'run no longer exists' },
      'report skipped: the run was deleted while GitHub rate-limited it',
    );
  } else if (outcome.kind === 'replaced') {
    logger.info(
      {
        event: 'job.report.completed',
        status: 'skipped',
        reason: outcome.reason,
        ...rateLimitFields(rateLimit),
      },
      'report skipped: GitHub rate-limited it, and the run changed meanwhile',
    );
  } else if (outcome.kind === 'unavailable') {
    await stopForUnavailableInstallation(context, jobId, runId, outcome.unavailable, logger);
  }
}
