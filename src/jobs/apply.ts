import { and, eq, isNull, sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import { applyPatchRequest, ApplyRejectedError } from '../apply/apply-patch-request.ts';
import { ApplyUnconfirmedError } from '../apply/apply-rejected-error.ts';
import { clearedApplyWait } from '../apply/apply-wait.ts';
import { previewVersionSchema } from '../apply/preview-version.ts';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import { applyModes, patchRequests } from '../db/schema/index.ts';
import { safeErrorMessage, toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';
import { transactionDb } from './boss.ts';
import { JobError } from './job-error.ts';
import { rateLimitedSince } from './rate-limit-wait.ts';

export const applyQueue = 'apply';

/** An apply that GitHub rate-limited, continued by a job once the limit lifts. */
export const applyJobData = z.object({
  patchRequestId: z.uuid(),
  /** The user who applied, who must own the patch request. */
  userId: z.uuid(),
  /** The mode the user asked for; without it the pull request decides, as for the API. */
  mode: z.enum(applyModes).optional(),
  /** The version of the preview that the user saw; the job writes nothing once the files differ. */
  previewVersion: previewVersionSchema.optional(),
  rateLimitedSince,
});
export type ApplyJobData = z.infer<typeof applyJobData>;

export const applyQueueOptions = {
  retryLimit: 2,
  retryDelay: 10,
  retryBackoff: true,
  expireInSeconds: 10 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/**
 * Continues an apply that GitHub rate-limited. It applies as the API does, after looking on
 * GitHub for a commit or review that the rate-limited call left, so an apply that took effect is
 * recorded and not written again. A rejection, such as a moved branch or a closed pull request,
 * is stored as the patch request's `applyError` and ends the job without a retry. Another rate
 * limit queues the next job (see `queueApplyAfterRateLimit`), and so does a claim of another
 * call, for when that claim is released or goes stale (see `continueAfterClaim`).
 */
export async function handleApplyJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<ApplyJobData>,
): Promise<void> {
  const parsed = applyJobData.safeParse(job.data);
  if (!parsed.success) {
    await endInvalidJob(context, job, parsed.error);
    return;
  }
  const data = parsed.data;
  const { patchRequestId } = data;
  const logger = context.logger.child({ jobId: job.id, patchRequestId, queue: applyQueue });
  const ofThisJob = and(eq(patchRequests.id, patchRequestId), eq(patchRequests.applyJobId, job.id));
  // A suspend that cancelled this job stored its reason already, which is kept.
  const storeError = (message: string) =>
    context.db
      .update(patchRequests)
      .set({ applyError: message.slice(0, 2000) })
      .where(and(ofThisJob, isNull(patchRequests.applyError)));
  try {
    await context.db.update(patchRequests).set(clearedApplyWait).where(ofThisJob);
    const result = await applyPatchRequest(
      context,
      {
        patchRequestId,
        userId: data.userId,
        mode: data.mode,
        previewVersion: data.previewVersion,
        job: { id: job.id, data },
      },
      logger,
    );
    if (result === null) {
      logger.info({ event: 'job.apply.completed', status: 'skipped' }, 'apply skipped: the patch request no longer exists');
    } else if ('alreadyApplied' in result && result.alreadyApplied) {
      logger.info(
        { event: 'job.apply.completed', status: 'skipped', mode: result.mode },
        'apply skipped: another call applied the patch request meanwhile',
      );
    } else if ('rateLimitedUntil' in result) {
      logger.info(
        { event: 'job.apply.completed', status: 'waiting', rateLimitedUntil: result.rateLimitedUntil },
        'apply continues in a new job when the GitHub rate limit lifts',
      );
    } else if ('otherApplyWaitUntil' in result) {
      // Only API calls get the wait of a pending job, so a job does not get here.
      logger.info(
        { event: 'job.apply.completed', status: 'waiting', otherApplyWaitUntil: result.otherApplyWaitUntil },
        'apply continues in another job',
      );
    } else {
      logger.info({ event: 'job.apply.completed', status: 'applied', mode: result.mode }, 'apply finished');
    }
  } catch (error) {
    const claimStaleAt = error instanceof ApplyRejectedError ? error.details?.claimStaleAt : undefined;
    if (typeof claimStaleAt === 'string') {
      // The claim is another call's or a dead attempt's of this job, which a retry cannot
      // tell apart. A job that starts once the claim goes stale finds the result of either.
      await continueAfterClaim(context, job.id, data, new Date(claimStaleAt), logger);
      return;
    }
    // An unconfirmed write is retried, because the retry looks for the commit or review first.
    const retried = error instanceof ApplyUnconfirmedError;
    if ((error instanceof ApplyRejectedError && !retried) || error instanceof ConfigError) {
      // A retry would be rejected the same way.
      await storeError(error.message);
      logger.warn({ event: 'job.apply.rejected', reason: error.message }, 'apply rejected');
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const safe = toSafeError(error);
    logger.error({ event: 'job.apply.failed', err: safe, attempt: job.retryCount, finalAttempt }, 'apply failed');
    if (finalAttempt) await storeError(`Applying failed: ${safeErrorMessage(error)}`);
    // pg-boss stores the thrown error in its job table, so it gets the logged fields only.
    throw new JobError(safe);
  }
}

/**
 * Ends an apply job whose data `applyJobData` rejects, such as a job that an earlier version
 * queued with a `previewVersion` that names a file twice. A retry would fail the same way, so
 * the job completes, and when its data names a patch request whose apply job it is, the
 * request's wait ends and its `applyError` states why nothing was applied.
 */
async function endInvalidJob(context: AppContext, job: PgBoss.JobWithMetadata<unknown>, error: z.ZodError) {
  const problems = error.issues.map((issue) => {
    const field = issue.path.join('.') || 'data';
    // A custom issue's message, such as previewVersion's, is what a valid value is.
    return issue.code === 'custom' ? `${field}: expected ${issue.message}` : `${field}: ${issue.message}`;
  });
  const message =
    `Apply job ${job.id} has invalid data, so nothing was applied: ${problems.join('; ')}. An ` +
    'earlier version of Fixwright can have queued such a job. Reload the preview and apply it again.';
  const target = z.object({ patchRequestId: z.uuid() }).safeParse(job.data);
  const patchRequestId = target.success ? target.data.patchRequestId : null;
  context.logger.error(
    { event: 'job.apply.invalid_data', jobId: job.id, patchRequestId, queue: applyQueue, problems },
    'apply job ended: its data is invalid',
  );
  if (patchRequestId === null) return;
  // A suspend that cancelled this job stored its reason already, which is kept.
  const applyError = sql`coalesce(${patchRequests.applyError}, ${message.slice(0, 2000)})`;
  await context.db
    .update(patchRequests)
    .set({ ...clearedApplyWait, applyError })
    .where(and(eq(patchRequests.id, patchRequestId), eq(patchRequests.applyJobId, job.id)));
}

/**
 * Queues an apply job that starts one second after `claimStaleAt`, when an apply job met the
 * claim of another call, and stores its id and start time on the patch request, so the pages
 * show the wait. The call that releases the claim starts that job at once (see
 * `releaseApplyClaim`), and so does this function when the claim was released before its
 * transaction. Nothing is queued when job `jobId` no longer owns the request: it was applied,
 * another job replaced this one, or a suspend, close or regeneration stored an apply error.
 */
async function continueAfterClaim(
  context: AppContext,
  jobId: string,
  data: ApplyJobData,
  claimStaleAt: Date,
  logger: Logger,
): Promise<void> {
  let startAfter = new Date(claimStaleAt.getTime() + 1000);
  const nextJobId = await context.db.transaction(async (tx) => {
    const [request] = await tx
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, data.patchRequestId))
      .for('update');
    if (!request || request.appliedAt || request.applyError !== null || request.applyJobId !== jobId) {
      return null;
    }
    // The row lock orders this after a release, which would find no job to start.
    if (request.applyStartedAt === null) startAfter = new Date();
    const id = await context.boss.send(applyQueue, data, { startAfter, db: transactionDb(tx) });
    await tx
      .update(patchRequests)
      .set({ applyJobId: id, ...clearedApplyWait, applyClaimWaitUntil: startAfter })
      .where(eq(patchRequests.id, request.id));
    return id;
  });
  logger.info(
    nextJobId === null
      ? { event: 'job.apply.completed', status: 'skipped', reason: 'another call applies it' }
      : { event: 'job.apply.claimed_elsewhere', nextJobId, startAfter: startAfter.toISOString() },
    nextJobId === null
      ? 'apply skipped: another call holds the claim, and the job no longer owns the patch request'
      : 'another call holds the claim, so the apply continues in a new job once it goes stale',
  );
}
