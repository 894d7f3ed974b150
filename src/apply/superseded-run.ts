import { sql } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import type { patchRequests, prRuns } from '../db/schema/index.ts';
import { applyQueue } from '../jobs/apply.ts';

type StoredRequest = Pick<typeof patchRequests.$inferSelect, 'applyStartedAt' | 'applyJobId'>;

/**
 * Tells whether an earlier apply of the request may have pushed a commit or posted a review
 * that it did not record. An apply claims the request before it writes to GitHub, and records
 * its result in the update that releases the claim. So a claim that remains belongs to a call
 * that still runs or died after it wrote. An apply job that pg-boss has not finished (created,
 * retry or active) may still write, and the rate-limited call before it, or its own failed
 * attempt, may have written already. Such an apply may have pushed the commit that superseded
 * the run, so applying again stays allowed, and it finds and records that commit.
 *
 * NOTE: a ref update or review that got a server error, no response or an invalid response,
 * followed by a failed read of the branch or the reviews, may have taken effect. An apply that
 * ended that way released its claim, so it is not detected here once its job, if any, has
 * finished.
 */
export async function hasUnrecordedApply(db: Database | Transaction, request: StoredRequest): Promise<boolean> {
  if (request.applyStartedAt !== null) return true;
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
