import { sql } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';

/**
 * Takes a transaction-scoped advisory lock for one pull request, so webhook deliveries of the
 * same pull request that arrive together decide in turn which run is the newest.
 */
export async function lockPullRequest(
  tx: Transaction,
  repositoryId: number,
  prNumber: number,
): Promise<void> {
  const key = `fixwright:pull-request:${repositoryId}#${prNumber}`;
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`);
}
