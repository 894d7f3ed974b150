import { ConfigError } from '../config/env.ts';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import { failPatchRequest, PreviewRateLimitedError, runPreview } from '../autofix/preview.ts';
import type { AppContext } from '../context.ts';
import type { Logger } from '../logger.ts';
import { toSafeError } from '../errors/safe-error.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit } from '../github/rate-limit.ts';
import { GitHubResponseTooLargeError } from '../github/responses.ts';
import { JobError, toJobError } from './job-error.ts';
import {
  clearPreviewRateLimit,
  queuePreviewAfterRateLimit,
  storePreviewRateLimit,
} from './preview-rate-limit.ts';
import { logRateLimitQueueFailure, rateLimitedSince } from './rate-limit-wait.ts';

export const previewQueue = 'preview';

export const previewJobData = z.object({
  patchRequestId: z.uuid(),
  rateLimitedSince,
  /**
   * Number of this job's first attempt in its model calls' idempotency keys, set on a job that
   * continues a preview after a rate limit: one more than the attempt that hit the limit. So
   * such jobs never reuse a key of the jobs they continue. Default 0. A regeneration's job
   * starts at 0 again, and its keys differ by the file's new generation.
   */
  firstAttempt: z.number().int().nonnegative().optional(),
});
export type PreviewJobData = z.infer<typeof previewJobData>;

/** Returns the attempt number in the idempotency keys of a preview job's model calls. */
export function previewCallAttempt(data: { firstAttempt?: number } | null, retryCount: number): number {
  return (data?.firstAttempt ?? 0) + retryCount;
}

export const previewQueueOptions = {
  retryLimit: 3,
  retryDelay: 10,
  retryBackoff: true,
  expireInSeconds: 30 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/**
 * Builds a fix preview. Safe to retry: files already finished are kept, and each model call
 * carries an idempotency key with the attempt number, so a retried call is a new ledger row
 * and a settled call is never charged twice. A suspended or uninstalled installation, or a
 * GitHub response over the size limit, fails the request at once and completes the job without
 * a retry. Such a response to a file read fails only that file (see `runPreview`). A failure
 * ends the request only while this job is its current preview job (see endPatchRequest). A
 * GitHub rate limit that Octokit does not wait out ends the job, and a new preview job
 * continues the preview when the limit lifts (see `queuePreviewAfterRateLimit`). The wait is
 * stored as soon as a file read gets the limit, before the model calls under way end (see
 * `storePreviewRateLimit`).
 */
export async function handlePreviewJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<PreviewJobData>,
  /** Aborts when the process stops; see `runPreview`. */
  signal?: AbortSignal,
): Promise<void> {
  const data = previewJobData.parse(job.data);
  const { patchRequestId } = data;
  const logger = context.logger.child({ jobId: job.id, patchRequestId, queue: previewQueue });
  const startedAt = Date.now();
  const attempt = previewCallAttempt(data, job.retryCount);
  try {
    await clearPreviewRateLimit(context.db, patchRequestId, job.id);
    // pg-boss takes the attempt for dead and retries it once its time limit has passed.
    const timeLimitEnd = new Date(job.startedOn).getTime() + job.expireInSeconds * 1000;
    const outcome = await runPreview(context, patchRequestId, job.retryCount, logger, {
      jobId: job.id,
      firstAttempt: data.firstAttempt,
      signal,
      settleRetryUntil: Number.isFinite(timeLimitEnd) ? timeLimitEnd : undefined,
      onRateLimited: (rateLimit) => storePreviewRateLimit(context, { id: job.id, data }, rateLimit, logger),
    });
    logger.info(
      { event: 'job.preview.completed', durationMs: Date.now() - startedAt, ...outcome },
      'preview finished',
    );
  } catch (error) {
    if (signal?.aborted) {
      // The stop's clean-up releases the attempt's reservations and fails a last attempt's
      // preview, so an error that the stop caused does not fail the preview here.
      logger.info({ event: 'job.preview.interrupted', err: toSafeError(error) }, 'preview interrupted because the service is stopping');
      return;
    }
    if (error instanceof ConfigError) {
      // Missing credentials will still be missing on a retry; fail now with what to set.
      await endPatchRequest(context, job, patchRequestId, error, logger);
      logger.warn(
        { event: 'job.preview.not_configured', reason: error.message },
        'preview stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      const recorded = await recordInstallationUnavailable(context.db, unavailable);
      await endPatchRequest(context, job, patchRequestId, recorded, logger);
      logger.warn(
        {
          event: 'job.preview.stopped',
          installationId: unavailable.installationId,
          reason: unavailable.reason,
        },
        'preview stopped: the installation is unavailable',
      );
      return;
    }
    if (error instanceof GitHubResponseTooLargeError) {
      // The response would be as large on a retry, so the preview ends now.
      await endPatchRequest(context, job, patchRequestId, error, logger);
      logger.error(
        {
          event: 'job.preview.failed',
          err: toSafeError(error),
          attempt: job.retryCount,
          finalAttempt: true,
        },
        'preview failed: a GitHub response is larger than the limit',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = error instanceof PreviewRateLimitedError ? error.rateLimit : asGitHubRateLimit(error);
    if (rateLimit) {
      const response = error instanceof PreviewRateLimitedError ? error.cause : error;
      try {
        const outcome = await queuePreviewAfterRateLimit(
          context,
          { id: job.id, data, queue: previewQueue },
          attempt,
          rateLimit,
          response,
          logger,
        );
        if (outcome.kind === 'queued') {
          logger.info(
            {
              event: 'job.preview.completed',
              status: 'waiting',
              nextJobId: outcome.jobId,
              rateLimitedUntil: new Date(rateLimit.liftsAt).toISOString(),
            },
            'preview continues in a new job when the GitHub rate limit lifts',
          );
        } else if (outcome.kind === 'too_long') {
          await endPatchRequest(context, job, patchRequestId, outcome.error, logger);
        } else if (outcome.kind === 'unavailable') {
          await endPatchRequest(context, job, patchRequestId, outcome.unavailable, logger);
          logger.warn(
            { event: 'job.preview.stopped', installationId: outcome.unavailable.installationId },
            'preview stopped: the installation is unavailable',
          );
        }
      } catch (queueError) {
        // The transaction rolled back, so the request still names this job, and pg-boss retries
        // it unless this was the last attempt.
        logRateLimitQueueFailure(logger, 'job.preview', queueError, rateLimit, job);
        if (finalAttempt) await endPatchRequest(context, job, patchRequestId, response, logger);
        throw toJobError(queueError);
      }
      return;
    }
    const safe = toSafeError(error);
    logger.error(
      { event: 'job.preview.failed', err: safe, attempt: job.retryCount, finalAttempt },
      'preview failed',
    );
    if (finalAttempt) {
      await endPatchRequest(context, job, patchRequestId, error, logger).catch((failError: unknown) => {
        logger.error(
          { event: 'job.preview.store_failure_failed', err: toSafeError(failError) },
          'failed to store the patch request failure',
        );
      });
    }
    // pg-boss stores the thrown error in its job table, so it gets the logged fields only.
    throw new JobError(safe);
  }
}

/**
 * Ends the job's patch request with `error` (see failPatchRequest) unless another preview job
 * owns the request. That happens when an attempt of this job fails after the preview finished
 * and a regeneration sent a new job, such as an attempt that pg-boss started again after the
 * job ran past its time limit. The other job finishes the request itself, so this one only
 * logs that it left the request.
 */
async function endPatchRequest(
  context: AppContext,
  job: PgBoss.JobWithMetadata<PreviewJobData>,
  patchRequestId: string,
  error: unknown,
  logger: Logger,
): Promise<void> {
  const result = await failPatchRequest(context.db, patchRequestId, error, { jobId: job.id });
  if (result.outcome !== 'not_current_job') return;
  logger.warn(
    {
      event: 'job.preview.failure_skipped',
      attempt: job.retryCount,
      currentJobId: result.currentJobId,
      err: toSafeError(error),
    },
    'preview job failed, but another preview job owns the preview now; left the preview to that job',
  );
}
