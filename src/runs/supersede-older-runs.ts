import { and, eq, inArray, isNull, lte, ne, or, type SQL } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { installations, prRuns } from '../db/schema/index.ts';
import { analyzeQueue } from '../jobs/analyze.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { cancelFixPressNoticesOfRuns, cancelPatchRequestsOfRuns } from './cancel-run-work.ts';
import { describeRunListing } from './visible-runs.ts';

/** Run statuses that a newer commit replaces; cancelled runs stay cancelled. */
const replaceableStatuses = ['queued', 'analyzing', 'completed', 'failed'] as const;

/**
 * Marks the pull request's other runs from events no newer than `updatedAt` superseded, and
 * cancels their queued analyze jobs, pending press notice jobs and unfinished patch requests.
 * Returns the superseded run ids. `installationId` is the installation of run `runId`. The
 * reason on runs of another installation names that installation instead of the run, because
 * their owner may not be able to open it (see describeOtherInstallationCommit).
 */
export async function supersedeOlderRuns(
  tx: Transaction,
  boss: PgBoss,
  target: {
    repositoryId: number;
    prNumber: number;
    runId: string;
    installationId: number;
    headSha: string;
    updatedAt: Date;
  },
): Promise<string[]> {
  const others = ne(prRuns.id, target.runId);
  const sameInstallation = await supersedeRuns(
    tx,
    boss,
    target,
    and(others, eq(prRuns.installationId, target.installationId))!,
    {
      run: `Superseded by run ${target.runId} for the newer commit ${target.headSha}.`,
      patchRequest: newerCommitCancelReason(target.headSha),
    },
  );
  const newer = await describeOtherInstallationCommit(tx, target.installationId, target.headSha);
  const otherInstallations = await supersedeRuns(
    tx,
    boss,
    target,
    and(others, ne(prRuns.installationId, target.installationId))!,
    {
      run: `Superseded: ${newer}`,
      patchRequest: `Cancelled: ${newer}`,
    },
  );
  return [...sameInstallation, ...otherInstallations];
}

/**
 * Describes a newer commit of the pull request that GitHub sent for installation
 * `installationId`, to the owner of a run of another installation. Each installation's runs are
 * listed only for the user who installed the app there, so the sentence names the installation
 * and its account rather than a run that the reader may get 404 for.
 */
export async function describeOtherInstallationCommit(
  tx: Transaction,
  installationId: number,
  headSha: string,
): Promise<string> {
  const [installation] = await tx
    .select({ accountLogin: installations.accountLogin, userId: installations.userId })
    .from(installations)
    .where(eq(installations.id, installationId));
  const account = installation ? ` on account ${installation.accountLogin}` : '';
  const listing = describeRunListing('that run', installation?.userId != null);
  return (
    `GitHub sent the newer commit ${headSha} of this pull request for installation ` +
    `${installationId}${account}, not for this run's installation, as it does after the ` +
    `repository moved to another account or the app was installed again. ${listing}`
  );
}

function newerCommitCancelReason(headSha: string): string {
  return `Cancelled: the pull request has a newer commit, ${headSha}; request the fix on the newest run.`;
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
  return supersedeRuns(tx, boss, target, ne(prRuns.headSha, target.headSha), {
    run: reason,
    patchRequest: newerCommitCancelReason(target.headSha),
  });
}

async function supersedeRuns(
  tx: Transaction,
  boss: PgBoss,
  target: { repositoryId: number; prNumber: number; headSha: string; updatedAt: Date },
  exclusion: SQL,
  reasons: { run: string; patchRequest: string },
): Promise<string[]> {
  const older = await tx
    .update(prRuns)
    .set({ status: 'superseded', error: reasons.run })
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
  await cancelPatchRequestsOfRuns(tx, boss, olderIds, reasons.patchRequest);
  return olderIds;
}
