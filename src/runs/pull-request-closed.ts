import { eq } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { prRuns } from '../db/schema/index.ts';

/**
 * Raised when a run's pull request is closed. Reopening the pull request on GitHub clears the
 * mark, so the message names the pull request and that step.
 */
export class PullRequestClosedError extends Error {
  override name = 'PullRequestClosedError';

  constructor(
    /** OWNER/NAME of the base repository. */
    readonly repository: string,
    readonly prNumber: number,
    readonly closedAt: Date,
  ) {
    super(
      `Pull request ${repository}#${prNumber} is closed. Reopen it on GitHub to request or ` +
        'apply fixes.',
    );
  }
}

/** Returns the error for a run whose pull request is closed, or null while it is open. */
export function pullRequestClosedError(run: {
  repository: string;
  prNumber: number;
  prClosedAt: Date | null;
}): PullRequestClosedError | null {
  return run.prClosedAt
    ? new PullRequestClosedError(run.repository, run.prNumber, run.prClosedAt)
    : null;
}

/**
 * Locks the run's row FOR SHARE and returns the error when its pull request is closed, or null
 * when it is open or the run does not exist.
 *
 * Call it in the transaction that creates work for the run, before that work is written. The
 * lock lasts until the transaction ends, and it conflicts with the UPDATE that a `closed` event
 * makes on every run of the pull request (src/events/pull-request.ts). A close that updated
 * the row first makes this call wait for its commit and then return the error. A close that
 * comes second waits for the caller to commit, and then cancels the new patch request with
 * the other unfinished ones. Call findInstallationUnavailable first, because a suspend locks
 * the installation before the runs, and taking the locks in the same order avoids deadlocks.
 */
export async function findPullRequestClosed(
  tx: Transaction,
  runId: string,
): Promise<PullRequestClosedError | null> {
  const [run] = await tx
    .select({
      repository: prRuns.repository,
      prNumber: prRuns.prNumber,
      prClosedAt: prRuns.prClosedAt,
    })
    .from(prRuns)
    .where(eq(prRuns.id, runId))
    .for('share');
  return run ? pullRequestClosedError(run) : null;
}
