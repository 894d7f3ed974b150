import { and, inArray } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { patchRequests } from '../db/schema/index.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { previewQueue } from '../jobs/preview.ts';

/**
 * Cancels the unfinished patch requests of `runIds` with `reason`. Preview jobs that have not
 * started are cancelled in pg-boss in the same transaction. A preview already running reads the
 * cancelled status before its next file and stops. Returns the ids of the cancelled requests.
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
    .set({ status: 'cancelled', error: reason, completedAt: new Date() })
    .where(
      inArray(
        patchRequests.id,
        unfinished.map((request) => request.id),
      ),
    );
  const queuedJobIds = unfinished
    .filter((request) => request.status === 'queued' && request.previewJobId !== null)
    .map((request) => request.previewJobId!);
  if (queuedJobIds.length > 0) {
    await boss.cancel(previewQueue, queuedJobIds, { db: transactionDb(tx) });
  }
  return unfinished.map((request) => request.id);
}
