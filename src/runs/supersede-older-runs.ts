import { and, eq, inArray, isNull, lte, ne, or, type SQL } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { prRuns } from '../db/schema/index.ts';
import { analyzeQueue } from '../jobs/analyze.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { cancelFixPressNoticesOfRuns, cancelPatchRequestsOfRuns } from './cancel-run-work.ts';

/** Run statuses that a newer commit replaces; cancelled runs stay cancelled. */
const replaceableStatuses = ['queued', 'analyzing', 'completed', 'failed'] as const;

/**
 * Marks the pull request's other runs from events no newer than `updatedAt` superseded, and
 * cancels their queued analyze jobs, pending press notice jobs and unfinished patch requests.
 * Returns the superseded run ids.
 */
export async function supersedeOlderRuns(
  tx: Transaction,
  boss: PgBoss,
  target: {
    repositoryId: number;
    prNumber: number;
    runId: string;
    headSha: string;
    updatedAt: Date;
  },
): Promise<string[]> {
  const reason = `Superseded by run ${target.runId} for the newer commit ${target.headSha}.`;
  return supersedeRuns(tx, boss, target, ne(prRuns.id, target.runId), reason);
}

/**
 * Marks the pull request's runs of other commits than `headSha` from events no newer than
 * `updatedAt` superseded, with `reason`, and cancels their work as supersedeOlderRuns does. It
 * records a newer head commit that no run analyzes yet, such as one pushed while the
 * installation was suspended. Returns the superseded run ids.
 */
export async function supersedeRunsOfOtherCommits(
  tx: Transaction,
  boss: PgBoss,
  target: { repositoryId: number; prNumber: number; headSha: string; updatedAt: Date },
  reason: string,
): Promise<string[]> {
  return supersedeRuns(tx, boss, target, ne(prRuns.headSha, target.headSha), reason);
}

async function supersedeRuns(
  tx: Transaction,
  boss: PgBoss,
  target: { repositoryId: number; prNumber: number; headSha: string; updatedAt: Date },
  exclusion: SQL,
  reason: string,
): Promise<string[]> {
  const older = await tx
    .update(prRuns)
    .set({ status: 'superseded', error: reason })
    .where(
      and(
        eq(prRuns.repositoryId, target.repositoryId),
        eq(prRuns.prNumber, target.prNumber),
        exclusion,
        inArray(prRuns.status, [...replaceableStatuses]),
        or(isNull(prRuns.prUpdatedAt), lte(prRuns.prUpdatedAt, target.updatedAt)),
      ),
    )
    .returning({ id: prRuns.id, analyzeJobId: prRuns.analyzeJobId });
  const olderIds = older.map((row) => row.id);
  const jobIds = older.flatMap((row) => (row.analyzeJobId ? [row.analyzeJobId] : []));
  if (jobIds.length > 0) {
    // Cancelling only touches jobs that have not finished; a finished one is left as it is.
    await boss.cancel(analyzeQueue, jobIds, { db: transactionDb(tx) });
  }
  // A notice of a press on an older run's check run could name a patch request cancelled below.
  await cancelFixPressNoticesOfRuns(tx, boss, olderIds);
  await cancelPatchRequestsOfRuns(
    tx,
    boss,
    olderIds,
    `Cancelled: the pull request has a newer commit, ${target.headSha}; ` +
      'request the fix on the newest run.',
  );
  return olderIds;
}
