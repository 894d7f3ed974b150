import { sql } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import type { patchRequests, prRuns } from '../db/schema/index.ts';
import { applyQueue } from '../jobs/apply.ts';

type StoredRequest = Pick<
  typeof patchRequests.$inferSelect,
  'applyStartedAt' | 'applyJobId' | 'applyUnconfirmedAt'
>;

/**
 * Tells whether an earlier apply of the request may have pushed a commit or posted a review
 * that it did not record. An apply claims the request before it writes to GitHub, and records
 * its result in the update that releases the claim. So a claim that remains belongs to a call
 * that still runs or died after it wrote. A write that GitHub did not confirm, and that the
 * read after it could not check, is stored as `applyUnconfirmedAt` until an apply finds or
 * rules out its result. An apply job that pg-boss has not finished (created, retry or active)
 * may still write, and the rate-limited call before it, or its own failed attempt, may have
 * written already. Such an apply may have pushed the commit that superseded the run, so
 * applying again stays allowed, and it finds and records that commit.
 */
export async function hasUnrecordedApply(db: Database | Transaction, request: StoredRequest): Promise<boolean> {
  if (request.applyStartedAt !== null || request.applyUnconfirmedAt !== null) return true;
  if (request.applyJobId === null) return false;
  const [job] = await db.execute<{ id: string }>(sql`
    SELECT id FROM pgboss.job
    WHERE name = ${applyQueue} AND id = ${request.applyJobId} AND state < 'completed'`);
  return job !== undefined;
}

/**
 * Tells whether applying the request is rejected because a newer commit superseded its run. The
 * preview page disables "Apply" in the same case as `applyPatchRequest` rejects it.
 */
export async function isApplyBlockedBySupersededRun(
  db: Database | Transaction,
  request: StoredRequest,
  run: Pick<typeof prRuns.$inferSelect, 'status'>,
): Promise<boolean> {
  return run.status === 'superseded' && !(await hasUnrecordedApply(db, request));
}
