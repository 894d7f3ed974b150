import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { AppContext } from '../context.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { analyzeRun, failRun } from '../runs/analyze-run.ts';

export const analyzeQueue = 'analyze';

export const analyzeJobData = z.object({ runId: z.uuid() });
export type AnalyzeJobData = z.infer<typeof analyzeJobData>;

export const analyzeQueueOptions = {
  retryLimit: 4,
  retryDelay: 5,
  retryBackoff: true,
  expireInSeconds: 15 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/**
 * Analyzes one run. Safe to retry: findings of the run are replaced, not appended. A suspended
 * or uninstalled installation fails the run at once and completes the job without a retry.
 */
export async function handleAnalyzeJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<AnalyzeJobData>,
): Promise<void> {
  const { runId } = analyzeJobData.parse(job.data);
  const logger = context.logger.child({ jobId: job.id, runId, queue: analyzeQueue });
  const startedAt = Date.now();
  try {
    const outcome = await analyzeRun(context, runId, logger);
    logger.info(
      { event: 'job.analyze.completed', durationMs: Date.now() - startedAt, ...outcome },
      'analysis finished',
    );
  } catch (error) {
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      await recordInstallationUnavailable(context.db, unavailable);
      await failRun(context.db, runId, unavailable);
      logger.warn(
        {
          event: 'job.analyze.stopped',
          installationId: unavailable.installationId,
          reason: unavailable.reason,
        },
        'analysis stopped: the installation is unavailable',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    logger.error(
      { event: 'job.analyze.failed', err: error, attempt: job.retryCount, finalAttempt },
      'analysis failed',
    );
    if (finalAttempt) await failRun(context.db, runId, error);
    throw error;
  }
}
