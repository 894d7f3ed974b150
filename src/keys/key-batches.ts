import { and, asc, gt, type SQL } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { userApiKeys } from '../db/schema/index.ts';

/**
 * Locks and returns the next `batchSize` stored keys that match `where`, in id order after
 * `afterId` (from the first key when null). Commands that go through every stored key use it,
 * one batch a transaction, so a running service waits at most for one batch.
 */
export function lockNextKeys(tx: Transaction, where: SQL, afterId: string | null, batchSize: number) {
  return tx
    .select()
    .from(userApiKeys)
    .where(and(where, afterId === null ? undefined : gt(userApiKeys.id, afterId)))
    .orderBy(asc(userApiKeys.id))
    .limit(batchSize)
    .for('update');
}
