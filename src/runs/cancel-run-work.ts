import { and, eq, inArray, isNotNull, isNull, sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { clearedApplyWait } from '../apply/apply-wait.ts';
import { cancelledRegenerationError, restoreKeptResults } from '../autofix/kept-result.ts';
import { patchRequests, prRuns } from '../db/schema/index.ts';
import { applyQueue } from '../jobs/apply.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { fixPressNoticeQueue } from '../jobs/fix-press-notice.ts';
import { previewQueue } from '../jobs/preview.ts';

/**
 * Cancels the unfinished patch requests of `runIds` with `reason`. Preview jobs that have not
 * started are cancelled in pg-boss in the same transaction: the job of a queued request, and
 * the job of a running request that waits for a GitHub rate limit to lift. A preview already
 * running reads the cancelled status before its next file and stops. A regenerated file not
 * yet done gets its earlier result back. Returns the ids of the cancelled requests.
 */
export async function cancelPatchRequestsOfRuns(
  tx: Transaction,
  boss: PgBoss,
  runIds: string[],
  reason: string,
): Promise<string[]> {
  if (runIds.length === 0) return [];
  const unfinished = await tx
    .select({
      id: patchRequests.id,
      status: patchRequests.status,
      previewJobId: patchRequests.previewJobId,
    })
    .from(patchRequests)
    .where(
      and(
        inArray(patchRequests.runId, runIds),
        inArray(patchRequests.status, ['queued', 'running']),
      ),
    )
    .for('update');
  if (unfinished.length === 0) return [];

  await tx
    .update(patchRequests)
    .set({ status: 'cancelled', error: reason, completedAt: new Date(), previewRateLimitedUntil: null })
    .where(
      inArray(
        patchRequests.id,
        unfinished.map((request) => request.id),
      ),
    );
  await restoreKeptResults(
    tx,
    unfinished.map((request) => request.id),
    cancelledRegenerationError,
  );
  const queuedJobIds = unfinished
    .filter((request) => request.status === 'queued' && request.previewJobId !== null)
    .map((request) => request.previewJobId!);
  const runningJobIds = unfinished
    .filter((request) => request.status === 'running' && request.previewJobId !== null)
    .map((request) => request.previewJobId!);
  if (runningJobIds.length > 0) {
    // A running request's job that pg-boss has not started continues the preview after a rate
    // limit (see queuePreviewAfterRateLimit).
    const waiting = await tx.execute<{ id: string }>(sql`
      SELECT id FROM pgboss.job
      WHERE name = ${previewQueue} AND id IN ${runningJobIds} AND state = 'created'`);
    queuedJobIds.push(...waiting.map((job) => job.id));
  }
  if (queuedJobIds.length > 0) {
    await boss.cancel(previewQueue, queuedJobIds, { db: transactionDb(tx) });
  }
  return unfinished.map((request) => request.id);
}

/**
 * Cancels the apply jobs that pg-boss has not finished, waiting for a GitHub rate limit or
 * running, of the unapplied patch requests of `runIds` (a list or a subquery). Their patch
 * requests get `applyError` and stay ready. Returns how many were cancelled. A running job
 * that still applies clears the error when it succeeds.
 */
export async function cancelApplyJobsOfRuns(
  tx: Transaction,
  boss: PgBoss,
  runIds: string[] | SQLWrapper,
  applyError: string,
): Promise<number> {
  if (Array.isArray(runIds) && runIds.length === 0) return 0;
  // The rows are locked before the jobs are read, in a later statement. A transaction that
  // replaced a request's job and committed while this one waited for the lock has a job that
  // the snapshot of a single UPDATE with a subquery would not see.
  const withJob = await tx
    .select({ id: patchRequests.id, applyJobId: patchRequests.applyJobId })
    .from(patchRequests)
    .where(
      and(
        inArray(patchRequests.runId, runIds),
        isNull(patchRequests.appliedAt),
        isNotNull(patchRequests.applyJobId),
      ),
    )
    // In one order, so two events that cancel the same requests do not deadlock.
    .orderBy(patchRequests.id)
    .for('update');
  const jobIds = withJob.flatMap((request) => (request.applyJobId ? [request.applyJobId] : []));
  if (jobIds.length === 0) return 0;
  const pending = await tx.execute<{ id: string }>(sql`
    SELECT id FROM pgboss.job
    WHERE name = ${applyQueue} AND id IN ${jobIds} AND state < 'completed'`);
  const pendingJobIds = new Set(pending.map((job) => job.id));
  const cancelledIds = withJob
    .filter((request) => request.applyJobId !== null && pendingJobIds.has(request.applyJobId))
    .map((request) => request.id);
  if (cancelledIds.length === 0) return 0;
  await tx
    .update(patchRequests)
    .set({ applyError, ...clearedApplyWait })
    .where(inArray(patchRequests.id, cancelledIds));
  await boss.cancel(applyQueue, [...pendingJobIds], { db: transactionDb(tx) });
  return cancelledIds.length;
}

/**
 * Cancels the "Fix with AI" notice jobs of the runs `runIds` that pg-boss has not finished,
 * those waiting for a rate limit included. Notices that point a press on an earlier check run
 * to the newest one stay, because they remain true. Returns how many were cancelled.
 */
export async function cancelFixPressNoticesOfRuns(
  tx: Transaction,
  boss: PgBoss,
  runIds: string[],
): Promise<number> {
  if (runIds.length === 0) return 0;
  return cancelPendingNotices(
    tx,
    boss,
    sql`data->>'runId' IN ${runIds} AND data->'notice'->>'kind' <> 'earlier_analysis'`,
  );
}

/**
 * Cancels every "Fix with AI" notice job of the installation's runs that pg-boss has not
 * finished, those that point to a newer check run included, because GitHub rejects the app's
 * requests for a suspended or uninstalled installation. Returns how many were cancelled.
 */
export async function cancelFixPressNoticesOfInstallation(
  tx: Transaction,
  boss: PgBoss,
  installationId: number,
): Promise<number> {
  // The job data stores the run id as text, so the ids are compared as text.
  return cancelPendingNotices(
    tx,
    boss,
    sql`data->>'runId' IN (
      SELECT ${prRuns.id}::text FROM ${prRuns} WHERE ${prRuns.installationId} = ${installationId})`,
  );
}

/**
 * Cancels the unfinished notice jobs that `condition` selects, and clears the rate limit wait
 * that the run page shows for any of them. The run of a cancelled notice can stay completed, as
 * after a close or a suspend, and its page would otherwise show the wait until the run changes.
 */
async function cancelPendingNotices(tx: Transaction, boss: PgBoss, condition: SQL): Promise<number> {
  const pending = await tx.execute<{ id: string }>(sql`
    SELECT id FROM pgboss.job
    WHERE name = ${fixPressNoticeQueue} AND state < 'completed' AND ${condition}`);
  const jobIds = pending.map((job) => job.id);
  if (jobIds.length === 0) return 0;
  await boss.cancel(fixPressNoticeQueue, jobIds, { db: transactionDb(tx) });
  await tx
    .update(prRuns)
    .set({ rateLimitedUntil: null, rateLimitedJobId: null, rateLimitedQueue: null })
    .where(
      and(eq(prRuns.rateLimitedQueue, fixPressNoticeQueue), inArray(prRuns.rateLimitedJobId, jobIds)),
    );
  return jobIds.length;
}
