import { eq, sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import { patchRequests } from '../db/schema/index.ts';
import { applyQueue, type ApplyJobData } from '../jobs/apply.ts';
import { transactionDb } from '../jobs/boss.ts';
import type { Logger } from '../logger.ts';
import { clearedApplyWait } from './apply-wait.ts';

type RequestValues = Partial<typeof patchRequests.$inferInsert>;

/**
 * Releases the apply claim that was taken at `claimedAt` (PostgreSQL's text form of
 * `applyStartedAt`) on patch request `patchRequestId`, and stores `values` in the same update,
 * such as the applied commit. A claim that another call took over once it went stale stays
 * with that call, which releases it and handles the pending job when it ends. Otherwise the
 * same transaction handles the apply job that the request has pending:
 *
 * - With `cancelPendingJob`, the job is cancelled, and `cancelPendingJob` gets a phrase that
 *   names the job, such as "the apply job that waited for a GitHub rate limit", and returns the
 *   request's new `applyError`. An apply in another mode than the job's that failed passes it,
 *   because the job would otherwise apply in the mode that the user turned away from.
 * - Otherwise a job that waits for a claim to go stale (`applyClaimWaitUntil`) and has not
 *   started is queued again to start now, so it does not wait out the 10 minutes of a claim
 *   that ended early. It claims the request before it writes, so the two applies never write
 *   at once, and it ends without writing when this apply succeeded.
 *
 * The job's pg-boss row is locked FOR UPDATE, which workers skip when they fetch jobs, so a
 * job that is replaced here has not started. NOTE: a job that a worker started before this
 * cancel, and that claims the request after the release, still applies. That apply clears the
 * stored error when it succeeds, as after a suspend.
 */
export async function releaseApplyClaim(
  context: AppContext,
  claim: { patchRequestId: string; claimedAt: string },
  options: { values?: RequestValues; cancelPendingJob?: (pendingJob: string) => string },
  logger: Logger,
): Promise<void> {
  const { patchRequestId, claimedAt } = claim;
  const handled = await context.db.transaction(async (tx) => {
    const [request] = await tx
      .select({
        applyJobId: patchRequests.applyJobId,
        applyClaimWaitUntil: patchRequests.applyClaimWaitUntil,
        applyRateLimitedUntil: patchRequests.applyRateLimitedUntil,
        applyError: patchRequests.applyError,
        appliedAt: patchRequests.appliedAt,
        ownsClaim: sql<boolean>`coalesce(${patchRequests.applyStartedAt} = ${claimedAt}::timestamptz, false)`,
      })
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId))
      .for('update');
    const ownsClaim = request?.ownsClaim === true;
    const values = { ...(ownsClaim ? { applyStartedAt: null } : {}), ...options.values };
    if (Object.keys(values).length > 0) {
      await tx.update(patchRequests).set(values).where(eq(patchRequests.id, patchRequestId));
    }
    if (!ownsClaim) return request ? { event: 'apply.claim_taken_over' as const } : null;
    const jobId = request?.applyJobId;
    if (!jobId || request.applyError !== null || request.appliedAt !== null) return null;
    const [job] = await tx.execute<{ state: string; data: ApplyJobData }>(sql`
      SELECT state, data FROM pgboss.job
      WHERE name = ${applyQueue} AND id = ${jobId} AND state < 'completed'
      FOR UPDATE`);
    if (!job) return null;
    const db = transactionDb(tx);

    if (options.cancelPendingJob) {
      const pendingJob = request.applyClaimWaitUntil
        ? 'the apply job that waited for another apply of this preview'
        : request.applyRateLimitedUntil
          ? 'the apply job that waited for a GitHub rate limit'
          : 'the pending apply job';
      await context.boss.cancel(applyQueue, jobId, { db });
      await tx
        .update(patchRequests)
        .set({ ...clearedApplyWait, applyError: options.cancelPendingJob(pendingJob).slice(0, 2000) })
        .where(eq(patchRequests.id, patchRequestId));
      return { event: 'apply.pending_job_cancelled' as const, jobId };
    }

    if (request.applyClaimWaitUntil === null || job.state !== 'created') return null;
    await context.boss.cancel(applyQueue, jobId, { db });
    const nextJobId = await context.boss.send(applyQueue, job.data, { db });
    // The wait's end is stored only while the job still waits, because a successful apply
    // cleared the wait.
    await tx
      .update(patchRequests)
      .set({
        applyJobId: nextJobId,
        ...(options.values?.appliedAt ? {} : { applyClaimWaitUntil: sql`now()` }),
      })
      .where(eq(patchRequests.id, patchRequestId));
    return { event: 'apply.claim_wait_ended' as const, jobId, nextJobId };
  });
  if (handled?.event === 'apply.claim_taken_over') {
    logger.warn(
      { event: handled.event, claimedAt },
      'the claim went stale and another call took it over, so that call releases it',
    );
  } else if (handled?.event === 'apply.pending_job_cancelled') {
    logger.info(
      { event: handled.event, applyJobId: handled.jobId },
      'the apply in another mode failed, so the apply job that waited was cancelled',
    );
  } else if (handled) {
    logger.info(
      { event: handled.event, applyJobId: handled.jobId, nextJobId: handled.nextJobId },
      'the claim was released, so the apply job that waited for it starts now',
    );
  }
}
