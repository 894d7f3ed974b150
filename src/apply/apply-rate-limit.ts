import { eq } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import { patchRequests, prRuns, type ApplyMode } from '../db/schema/index.ts';
import type { GitHubRateLimit } from '../github/rate-limit.ts';
import { applyQueue, type ApplyJobData } from '../jobs/apply.ts';
import { transactionDb } from '../jobs/boss.ts';
import { findPatchRequestInstallation, queueAfterRateLimit, type RateLimitedWork } from '../jobs/rate-limit-wait.ts';
import type { Logger } from '../logger.ts';
import { ApplyRejectedError } from './apply-rejected-error.ts';
import { clearedApplyWait } from './apply-wait.ts';
import type { PreviewVersion } from './preview-version.ts';

/**
 * An apply whose job waits, and when that job starts: `rateLimitedUntil` when GitHub
 * rate-limited the apply. `otherApplyWaitUntil` is the latest start of a job that waits for the
 * claim of another apply of the patch request.
 */
export type ApplyWaiting = RateLimitedApply | ApplyWaitingForClaim;

export interface RateLimitedApply {
  id: string;
  status: 'waiting';
  rateLimitedUntil: string;
}

export interface ApplyWaitingForClaim {
  id: string;
  status: 'waiting';
  otherApplyWaitUntil: string;
}

/**
 * Queues an apply job of the patch request that starts when the rate limit lifts, and stores
 * its id and start time on the patch request (see `queueAfterRateLimit`). `job` is the apply
 * job that hit the limit, or undefined for an apply that an API request started. The new job
 * replaces and cancels a waiting job of an earlier request, so one apply job at most waits.
 * The job carries `previewVersion`, the version of the preview that the user saw, and checks it.
 * `rateLimitedSince` is the first rate-limited time of the job that such a request continues.
 * The maximum wait counts from it, or from now when it is undefined.
 *
 * Throws ApplyRejectedError when nothing is queued. That happens when the limit lifts later
 * than the maximum wait allows, or the installation is suspended or uninstalled. It also
 * happens when the patch request was applied or is no longer ready, its pull request was
 * closed, another apply job applies it, or `job` was cancelled.
 */
export async function queueApplyAfterRateLimit(
  context: AppContext,
  target: {
    patchRequestId: string;
    userId: string;
    mode?: ApplyMode;
    previewVersion?: PreviewVersion;
    job?: { id: string; data: ApplyJobData };
    rateLimitedSince?: number;
  },
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
): Promise<RateLimitedApply> {
  const { patchRequestId, job } = target;
  const since = job ? job.data.rateLimitedSince : target.rateLimitedSince;
  const data: ApplyJobData = {
    patchRequestId,
    userId: target.userId,
    ...(target.mode ? { mode: target.mode } : {}),
    ...(target.previewVersion === undefined ? {} : { previewVersion: target.previewVersion }),
    ...(since === undefined ? {} : { rateLimitedSince: since }),
  };
  const work: RateLimitedWork = {
    findInstallation: (tx) => findPatchRequestInstallation(tx, patchRequestId),
    async lockAndCheck(tx) {
      const [request] = await tx
        .select()
        .from(patchRequests)
        .where(eq(patchRequests.id, patchRequestId))
        .for('update');
      if (!request) return { kind: 'gone' };
      const [run] = await tx.select({ prClosedAt: prRuns.prClosedAt }).from(prRuns).where(eq(prRuns.id, request.runId));
      if (request.appliedAt) return { kind: 'replaced', reason: 'it was applied meanwhile' };
      if (request.status !== 'ready' && request.status !== 'partially_ready') {
        return { kind: 'replaced', reason: `it is ${request.status} now` };
      }
      if (run?.prClosedAt) return { kind: 'replaced', reason: 'its pull request was closed' };
      if (job && request.applyJobId !== job.id) {
        return { kind: 'replaced', reason: `apply job ${request.applyJobId} applies it` };
      }
      return null;
    },
    async recordNext(tx, nextJobId, until) {
      const [previous] = await tx
        .select({ applyJobId: patchRequests.applyJobId })
        .from(patchRequests)
        .where(eq(patchRequests.id, patchRequestId));
      await tx
        .update(patchRequests)
        .set({ applyJobId: nextJobId, ...clearedApplyWait, applyRateLimitedUntil: until, applyError: null })
        .where(eq(patchRequests.id, patchRequestId));
      const earlierJobId = previous?.applyJobId;
      if (earlierJobId && earlierJobId !== job?.id) {
        await context.boss.cancel(applyQueue, earlierJobId, { db: transactionDb(tx) });
      }
    },
  };
  const rateLimited = { queue: applyQueue, id: job?.id ?? null, data, event: job ? 'job.apply' : 'apply' };
  const outcome = await queueAfterRateLimit(context, rateLimited, rateLimit, error, logger, work);
  switch (outcome.kind) {
    case 'queued':
      return { id: patchRequestId, status: 'waiting', rateLimitedUntil: new Date(rateLimit.liftsAt).toISOString() };
    case 'too_long':
      throw new ApplyRejectedError('service_unavailable', outcome.error.message, {
        rateLimitedUntil: new Date(rateLimit.liftsAt).toISOString(),
      });
    case 'unavailable':
      throw new ApplyRejectedError('conflict', outcome.unavailable.message);
    case 'gone':
      throw new ApplyRejectedError('conflict', `Patch request ${patchRequestId} no longer exists.`);
    case 'replaced':
      throw new ApplyRejectedError(
        'conflict',
        `GitHub rate-limited the apply of patch request ${patchRequestId}, and it is not ` +
          `continued because ${outcome.reason}.`,
      );
  }
}
