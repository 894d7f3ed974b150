import { and, eq, inArray, isNull, or, sql } from 'drizzle-orm';
import { cancelledRegenerationError, restoreKeptResults } from '../autofix/kept-result.ts';
import type { Transaction } from '../db/client.ts';
import { patchRequests, prRuns } from '../db/schema/index.ts';
import { analyzeQueue } from '../jobs/analyze.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { previewQueue } from '../jobs/preview.ts';
import { reportQueue } from '../jobs/report.ts';
import { confirmPullRequestQueue } from '../jobs/confirm-pull-request-queue.ts';
import { cancelWaitingChecksOfInstallation } from '../jobs/keyed-checks.ts';
import { resumeInstallationQueue } from '../jobs/resume-installation-queue.ts';
import { cancelApplyJobsOfRuns, cancelFixPressNoticesOfInstallation } from './cancel-run-work.ts';

/** Cause of the cancellation: the installation event's action `suspend` or `deleted`. */
export type InstallationCancelCause = 'suspended' | 'uninstalled';

/**
 * Counts of the runs, reports, "Fix with AI" notice jobs, patch requests and waiting applies
 * that were cancelled.
 */
export interface CancelledInstallationWork {
  runs: number;
  reports: number;
  notices: number;
  patchRequests: number;
  applies: number;
}

/** A suspended or uninstalled installation whose work is cancelled. */
export interface StoppedInstallation {
  id: number;
  accountLogin: string;
  /** Login of the user who suspended or uninstalled it, or null when GitHub does not name one. */
  actorLogin: string | null;
  cause: InstallationCancelCause;
}

/**
 * Builds the reason stored on each cancelled run and patch request. It names the
 * installation, who stopped it when known, and what must happen before new work can start.
 * Only the side that suspended an installation can unsuspend it, either an owner of the
 * account or the app's owner (GitHub Docs, "Suspending a GitHub App installation"). With
 * `work: 'apply'` it builds the apply error of a cancelled apply job, whose preview stays ready
 * to apply again.
 */
export function describeInstallationCancel(
  installation: StoppedInstallation,
  work: 'runs' | 'apply' = 'runs',
): string {
  const { id, accountLogin, actorLogin, cause } = installation;
  const cancelled = work === 'apply' ? 'The apply was cancelled' : 'Cancelled';
  const restart =
    work === 'apply'
      ? 'Then apply again.'
      : 'Then push a new commit, or request the fix again with "Fix with AI" or "Preview fix".';
  if (cause === 'suspended') {
    const by = actorLogin === null ? '' : ` by ${actorLogin}`;
    return (
      `${cancelled} because GitHub App installation ${id} on ${accountLogin} was suspended${by}. ` +
      `Whoever suspended it, an owner of ${accountLogin} or the app's owner, must unsuspend it. ` +
      restart
    );
  }
  const uninstalled =
    actorLogin === null
      ? `the GitHub App was uninstalled from ${accountLogin}`
      : `${actorLogin} uninstalled the GitHub App from ${accountLogin}`;
  return (
    `${cancelled} because ${uninstalled} (installation ${id}). ` +
    `An owner of ${accountLogin} must install the app again. ${restart}`
  );
}

/**
 * Cancels the unfinished work of a suspended or uninstalled installation with reasons that
 * name it (see `describeInstallationCancel`), and returns what was cancelled as text, such as
 * "cancelled 1 run(s), 0 report(s) and 2 patch request(s)". It also cancels a waiting resume
 * of the installation's open pull requests. Otherwise that resume would keep the `unsuspend`
 * that ends this suspension from queueing a new one. A running resume reads the installation's
 * marks before each batch and stops by itself. The waiting checks of the installation's pull
 * requests, such as those a resume queued, are cancelled too, because GitHub rejects their
 * requests, and the resume after the next `unsuspend` queues them again.
 */
export async function stopInstallationWork(
  tx: Transaction,
  boss: PgBoss,
  installation: StoppedInstallation,
): Promise<string> {
  const reason = describeInstallationCancel(installation);
  const applyError = describeInstallationCancel(installation, 'apply');
  const cancelled = await cancelInstallationWork(tx, boss, installation.id, reason, applyError);
  const resumes = await cancelWaitingChecksOfInstallation(
    tx,
    boss,
    resumeInstallationQueue,
    installation.id,
  );
  const checks = await cancelWaitingChecksOfInstallation(
    tx,
    boss,
    confirmPullRequestQueue,
    installation.id,
  );
  const work = [
    `${cancelled.runs} run(s)`,
    `${cancelled.reports} report(s)`,
    `${cancelled.patchRequests} patch request(s)`,
    ...(cancelled.notices > 0 ? [`${cancelled.notices} notice job(s)`] : []),
    ...(cancelled.applies > 0 ? [`${cancelled.applies} apply job(s)`] : []),
    ...(resumes > 0 ? [`${resumes} resume job(s)`] : []),
    ...(checks > 0 ? [`${checks} pull request check(s)`] : []),
  ];
  return `cancelled ${work.slice(0, -1).join(', ')} and ${work.at(-1)}`;
}

/**
 * Cancels the unfinished work of an installation in the caller's transaction, so the status
 * change and the pg-boss cancellations commit or roll back together.
 *
 * - Queued and analyzing runs become `cancelled` with `reason`, and their analyze jobs are
 *   cancelled.
 * - Completed runs whose report is not posted get a report error that ends with `reason`,
 *   and their report jobs are cancelled. A run counts as not posted when `reportedAt` and
 *   `reportError` are null, or when its report job is queued, waiting or running in pg-boss.
 * - "Fix with AI" notice jobs of the installation's runs that pg-boss has not finished are
 *   cancelled. As in the cancels of a new commit, a close or a base change, they come after
 *   the analyze and report jobs and before the patch requests. A running notice job reads the
 *   installation again before it writes to GitHub (see publishFixPressNotice).
 * - Queued and running patch requests become `cancelled` with `reason`, and their preview jobs
 *   are cancelled, including the job of a running preview. pg-boss 10.4 then neither completes
 *   nor retries that job, because its complete and fail statements skip cancelled jobs. The
 *   worker still running it stops before its next file, where runPreview reads the status. A
 *   regenerated file not yet done gets its earlier result back.
 * - Apply jobs that wait for a GitHub rate limit, or run, are cancelled, and their patch
 *   requests get `applyError` (by default "The apply was cancelled. `reason`"). The previews
 *   stay ready.
 *
 * Token reservations are left to their owners. A queued preview has reserved nothing. A
 * model call in flight settles its own reservation once, under its idempotency key, and a
 * reservation whose worker died is released by the sweeper when it expires.
 */
export async function cancelInstallationWork(
  tx: Transaction,
  boss: PgBoss,
  installationId: number,
  reason: string,
  applyError = `The apply was cancelled. ${reason}`,
): Promise<CancelledInstallationWork> {
  const db = transactionDb(tx);
  const ofInstallation = eq(prRuns.installationId, installationId);

  const cancelledRuns = await tx
    .update(prRuns)
    .set({ status: 'cancelled', error: reason })
    .where(and(ofInstallation, inArray(prRuns.status, ['queued', 'analyzing'])))
    .returning({ analyzeJobId: prRuns.analyzeJobId });
  const analyzeJobIds = cancelledRuns.flatMap((run) => (run.analyzeJobId ? [run.analyzeJobId] : []));
  if (analyzeJobIds.length > 0) await boss.cancel(analyzeQueue, analyzeJobIds, { db });

  // A report whose last attempt failed keeps its own error. A run whose report job pg-boss has
  // not finished is unreported whatever reportedAt and reportError contain, because a job of an
  // earlier analysis may have written them, as on rows from before an analysis cleared them.
  const reportJobPending = sql`${prRuns.reportJobId} IN (
    SELECT id FROM pgboss.job WHERE name = ${reportQueue} AND state < 'completed')`;
  const unreported = await tx
    .update(prRuns)
    .set({
      reportedAt: null,
      reportError: `The check run and summary comment were not posted. ${reason}`,
    })
    .where(
      and(
        ofInstallation,
        eq(prRuns.status, 'completed'),
        or(and(isNull(prRuns.reportedAt), isNull(prRuns.reportError)), reportJobPending),
      ),
    )
    .returning({ reportJobId: prRuns.reportJobId });
  const reportJobIds = unreported.flatMap((run) => (run.reportJobId ? [run.reportJobId] : []));
  if (reportJobIds.length > 0) await boss.cancel(reportQueue, reportJobIds, { db });

  const notices = await cancelFixPressNoticesOfInstallation(tx, boss, installationId);

  const runsOfInstallation = tx.select({ id: prRuns.id }).from(prRuns).where(ofInstallation);
  const unfinished = await tx
    .select({ id: patchRequests.id, previewJobId: patchRequests.previewJobId })
    .from(patchRequests)
    .where(
      and(
        inArray(patchRequests.runId, runsOfInstallation),
        inArray(patchRequests.status, ['queued', 'running']),
      ),
    )
    .for('update');
  if (unfinished.length > 0) {
    await tx
      .update(patchRequests)
      .set({ status: 'cancelled', error: reason, completedAt: new Date() })
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
  }
  const previewJobIds = unfinished.flatMap((request) =>
    request.previewJobId ? [request.previewJobId] : [],
  );
  if (previewJobIds.length > 0) await boss.cancel(previewQueue, previewJobIds, { db });

  const applies = await cancelApplyJobsOfRuns(tx, boss, runsOfInstallation, applyError);

  return {
    runs: cancelledRuns.length,
    reports: unreported.length,
    notices,
    patchRequests: unfinished.length,
    applies,
  };
}
