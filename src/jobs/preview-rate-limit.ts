import { and, eq, inArray, sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import type { Database } from '../db/client.ts';
import { patchRequests } from '../db/schema/index.ts';
import type { GitHubRateLimit } from '../github/rate-limit.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';
import {
  findPatchRequestInstallation,
  queueAfterRateLimit,
  rateLimitFields,
  waitsTooLong,
  type RateLimitOutcome,
  type RateLimitedWork,
} from './rate-limit-wait.ts';

/**
 * Queues a preview job of patch request `data.patchRequestId` that starts when the rate limit
 * lifts, and makes it the request's preview job (`previewJobId`) in the same transaction (see
 * `queueAfterRateLimit`). So exactly one job is current, and a late attempt of job `jobId`
 * finds itself stale. `attempt` is the attempt that hit the limit, and the new job numbers its
 * attempts from `attempt + 1`, so its model calls get idempotency keys of their own.
 *
 * Nothing is queued when job `jobId` no longer owns the request: the request is gone, no longer
 * queued or running (cancelled, or finished by another attempt), or names another preview job.
 */
export async function queuePreviewAfterRateLimit<Data extends { patchRequestId: string; rateLimitedSince?: number }>(
  context: AppContext,
  job: { id: string; data: Data; queue: string },
  attempt: number,
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
): Promise<RateLimitOutcome> {
  const { patchRequestId } = job.data;
  const work: RateLimitedWork = {
    findInstallation: (tx) => findPatchRequestInstallation(tx, patchRequestId),
    async lockAndCheck(tx) {
      // The row lock orders this with a cancel, a regeneration and failPatchRequest, which lock
      // the request before they change its status or job.
      const [request] = await tx
        .select({ status: patchRequests.status, previewJobId: patchRequests.previewJobId })
        .from(patchRequests)
        .where(eq(patchRequests.id, patchRequestId))
        .for('update');
      if (!request) return { kind: 'gone' };
      if (request.status !== 'queued' && request.status !== 'running') {
        return { kind: 'replaced', reason: `it is ${request.status} now` };
      }
      if (request.previewJobId !== job.id) {
        return { kind: 'replaced', reason: `preview job ${request.previewJobId} works on it` };
      }
      return null;
    },
    async recordNext(tx, nextJobId, until) {
      await tx
        .update(patchRequests)
        .set({ previewJobId: nextJobId, previewRateLimitedUntil: until })
        .where(eq(patchRequests.id, patchRequestId));
    },
  };
  const data = { ...job.data, firstAttempt: attempt + 1 };
  const rateLimited = { queue: job.queue, id: job.id, data, event: 'job.preview' };
  const outcome = await queueAfterRateLimit(context, rateLimited, rateLimit, error, logger, work);
  if (outcome.kind === 'gone' || outcome.kind === 'replaced') {
    logger.info(
      {
        event: 'job.preview.completed',
        status: 'skipped',
        reason: outcome.kind === 'gone' ? 'patch request no longer exists' : outcome.reason,
        ...rateLimitFields(rateLimit),
      },
      'preview skipped: GitHub rate-limited it, and the patch request changed meanwhile',
    );
  }
  return outcome;
}

/** Clears the preview's rate limit wait when it is job `jobId`'s, which has started. */
export async function clearPreviewRateLimit(db: Database, patchRequestId: string, jobId: string): Promise<void> {
  await db
    .update(patchRequests)
    .set({ previewRateLimitedUntil: null })
    .where(and(eq(patchRequests.id, patchRequestId), eq(patchRequests.previewJobId, jobId)));
}

/**
 * Stores when the rate limit lifts that an attempt of preview job `job` just hit, while that
 * attempt's model calls that started before the limit still run (each up to LLM_TIMEOUT_MS per
 * try). So the preview page and the API show the wait before the job queues its successor,
 * which stores the time again. Of several limits, the latest lift time stays.
 *
 * Nothing is stored when the job no longer owns the request (see queuePreviewAfterRateLimit),
 * or when the limit lifts later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS allows, because the
 * preview then fails instead of waiting. A failed write is logged and not raised, because the
 * attempt must still end as rate-limited, and the successor's transaction stores the time.
 *
 * NOTE: an attempt can end without queueing the successor, after a service stop or a failed
 * queueing transaction. The stored time then stays until the job's next attempt starts and
 * clears it, so the wait shows the limit's time, not when that attempt starts.
 */
export async function storePreviewRateLimit(
  context: AppContext,
  job: { id: string; data: { patchRequestId: string; rateLimitedSince?: number } },
  rateLimit: GitHubRateLimit,
  logger: Logger,
): Promise<void> {
  const since = job.data.rateLimitedSince ?? Date.now();
  if (waitsTooLong(rateLimit, since, context.config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS)) return;
  const until = new Date(rateLimit.liftsAt).toISOString();
  try {
    await context.db
      .update(patchRequests)
      .set({
        // greatest() skips a null, so the first limit of the attempt is stored as it is.
        previewRateLimitedUntil: sql`greatest(${patchRequests.previewRateLimitedUntil}, ${until}::timestamptz)`,
      })
      .where(
        and(
          eq(patchRequests.id, job.data.patchRequestId),
          eq(patchRequests.previewJobId, job.id),
          inArray(patchRequests.status, ['queued', 'running']),
        ),
      );
  } catch (error) {
    logger.warn(
      { event: 'job.preview.rate_limit_store_failed', err: toSafeError(error), ...rateLimitFields(rateLimit) },
      'storing the GitHub rate limit wait failed, so the preview shows it once the job queues its successor',
    );
  }
}
