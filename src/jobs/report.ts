import { ConfigError } from '../config/env.ts';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { AppContext } from '../context.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { recordReportError, reportRun } from '../report/report-run.ts';

export const reportQueue = 'report';

export const reportJobData = z.object({ runId: z.uuid() });
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
 * succeed.
 */
export async function handleReportJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<ReportJobData>,
): Promise<void> {
  const { runId } = reportJobData.parse(job.data);
  const logger = context.logger.child({ jobId: job.id, runId, queue: reportQueue });
  const startedAt = Date.now();
  try {
    const outcome = await reportRun(context, runId, logger);
    logger.info(
      { event: 'job.report.completed', durationMs: Date.now() - startedAt, ...outcome },
      'report finished',
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      // Missing credentials will still be missing on a retry; fail now with what to set.
      await recordReportError(context.db, runId, error);
      logger.warn(
        { event: 'job.report.not_configured', reason: error.message },
        'report stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      await recordInstallationUnavailable(context.db, unavailable);
      await recordReportError(context.db, runId, unavailable);
      logger.warn(
        {
          event: 'job.report.stopped',
          installationId: unavailable.installationId,
          reason: unavailable.reason,
        },
        'report stopped: the installation is unavailable',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    logger.error(
      { event: 'job.report.failed', err: error, attempt: job.retryCount, finalAttempt },
      'report failed',
    );
    if (finalAttempt) await recordReportError(context.db, runId, error);
    throw error;
  }
}
