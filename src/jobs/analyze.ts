import { ConfigError } from '../config/env.ts';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { AppContext } from '../context.ts';
import { toSafeError } from '../errors/safe-error.ts';
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
    if (error instanceof ConfigError) {
      // Missing credentials will still be missing on a retry; fail now with what to set.
      await failRun(context.db, { runId, jobId: job.id }, error);
      logger.warn(
        { event: 'job.analyze.not_configured', reason: error.message },
        'analysis stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      await recordInstallationUnavailable(context.db, unavailable);
      await failRun(context.db, { runId, jobId: job.id }, unavailable);
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
    const safe = toSafeError(error);
    logger.error(
      { event: 'job.analyze.failed', err: safe, attempt: job.retryCount, finalAttempt },
      'analysis failed',
    );
    if (finalAttempt) {
      await failRun(context.db, { runId, jobId: job.id }, error).catch((failError: unknown) => {
        logger.error(
          { event: 'job.analyze.store_failure_failed', err: toSafeError(failError) },
          'failed to store the run failure',
        );
      });
    }
    // pg-boss stores the thrown error in its job table, so it gets the safe message only.
    throw new Error(safe.message);
  }
}
