import { eq, sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import { patchRequests } from '../db/schema/index.ts';
import { applyQueue, type ApplyJobData } from '../jobs/apply.ts';
import { transactionDb } from '../jobs/boss.ts';
import type { Logger } from '../logger.ts';

type RequestValues = Partial<typeof patchRequests.$inferInsert>;

/**
 * Releases the apply claim on patch request `patchRequestId` and stores `values` in the same
 * update, such as the applied commit. In the same transaction, an apply job of the request
 * that waits for a claim to go stale (`applyClaimWaitUntil`) and has not started is queued
 * again to start now, so it does not wait out the 10 minutes of a claim that ended early. It
 * claims the request before it writes, so the two applies never write at once, and it ends
 * without writing when this apply succeeded.
 *
 * The job's pg-boss row is locked FOR UPDATE, which workers skip when they fetch jobs, so a
 * job that is replaced here has not started.
 */
export async function releaseApplyClaim(
  context: AppContext,
  patchRequestId: string,
  options: { values?: RequestValues },
  logger: Logger,
): Promise<void> {
  const handled = await context.db.transaction(async (tx) => {
    const [request] = await tx
      .select({
        applyJobId: patchRequests.applyJobId,
        applyClaimWaitUntil: patchRequests.applyClaimWaitUntil,
        applyError: patchRequests.applyError,
      })
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId))
      .for('update');
    await tx
      .update(patchRequests)
      .set({ applyStartedAt: null, ...options.values })
      .where(eq(patchRequests.id, patchRequestId));
    const jobId = request?.applyJobId;
    if (!jobId || request.applyError !== null) return null;
    const [job] = await tx.execute<{ state: string; data: ApplyJobData }>(sql`
      SELECT state, data FROM pgboss.job
      WHERE name = ${applyQueue} AND id = ${jobId} AND state < 'completed'
      FOR UPDATE`);
    if (!job) return null;
    const db = transactionDb(tx);
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
    return { event: 'apply.claim_wait_ended', jobId, nextJobId };
  });
  if (handled) {
    logger.info(
      { event: handled.event, applyJobId: handled.jobId, nextJobId: handled.nextJobId },
      'the claim was released, so the apply job that waited for it starts now',
    );
  }
}
