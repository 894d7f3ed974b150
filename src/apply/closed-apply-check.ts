import type { Octokit } from '@octokit/rest';
import { and, eq, isNull, sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { patchRequests, type ClosedApplyCheck } from '../db/schema/index.ts';
import { parseGitHubResponse } from '../github/github-response.ts';
import { clearedApplyWait } from './apply-wait.ts';
import { containsCommit } from './commit-files.ts';
import { pullRequestStateSchema } from './pull-request-check.ts';
import type { SuggestionTarget } from './suggestion-review.ts';
import { UnconfirmedWriteError } from './unconfirmed-write-error.ts';
import {
  clearedUnconfirmedApply,
  findUnconfirmedResult,
  type UnconfirmedApply,
} from './unconfirmed-write.ts';

/**
 * The state of a patch request that a check after a close read: its unconfirmed write and the
 * apply claim left by an apply that died, if any (PostgreSQL's text form of `applyStartedAt`).
 * The check records its outcome only while the request still has that state.
 */
export interface ClosedCheckTarget {
  patchRequestId: string;
  unconfirmed: UnconfirmedApply;
  staleClaim: string | null;
}

/**
 * Looks on GitHub for the result of the unconfirmed write of an apply whose pull request closed,
 * as the next apply does: the commit on the head branch, or the patch request's review. A commit
 * that the branch does not contain is also looked for below the pull request's head commit,
 * because the branch of a closed pull request may be deleted, as after a merge, while GitHub
 * keeps its head. Only reads, and raises the error of a failed read.
 */
export async function findResultAfterClose(
  octokit: Octokit,
  unconfirmed: UnconfirmedApply,
  target: { branch: string; review: SuggestionTarget },
): Promise<{ commitSha: string | null; reviewId: number | null }> {
  let found: { commitSha: string | null; reviewId: number | null };
  try {
    found = await findUnconfirmedResult(octokit, unconfirmed, target);
  } catch (error) {
    throw error instanceof UnconfirmedWriteError ? error.readError : error;
  }
  if (found.commitSha !== null || found.reviewId !== null) return found;
  if (unconfirmed.mode !== 'commit' || unconfirmed.commitSha === null) return found;

  const { owner, repo, pullNumber } = target.review;
  const pullRequest = parseGitHubResponse(
    pullRequestStateSchema,
    'GET',
    await octokit.rest.pulls.get({ owner, repo, pull_number: pullNumber }),
  );
  const contained = await containsCommit(octokit, {
    owner,
    repo,
    tipSha: pullRequest.head.sha,
    commitSha: unconfirmed.commitSha,
  });
  return { commitSha: contained ? unconfirmed.commitSha : null, reviewId: null };
}

/** Matches the request while it is unapplied and still has the state that the check read. */
function unchangedSince(target: ClosedCheckTarget): SQL {
  return and(
    eq(patchRequests.id, target.patchRequestId),
    isNull(patchRequests.appliedAt),
    sql`${patchRequests.applyUnconfirmedAt} = ${target.unconfirmed.at}::timestamptz`,
    target.staleClaim === null
      ? isNull(patchRequests.applyStartedAt)
      : sql`${patchRequests.applyStartedAt} = ${target.staleClaim}::timestamptz`,
  )!;
}

/**
 * Records the commit or review that the check found as the request's apply, as an apply that
 * finds it does. Returns false, and changes nothing, when the request changed since the read.
 */
export async function recordFoundApply(
  db: Database,
  target: ClosedCheckTarget,
  found: { commitSha: string | null; reviewId: number | null },
): Promise<boolean> {
  const updated = await db
    .update(patchRequests)
    .set({
      applyMode: found.reviewId !== null ? 'suggestions' : 'commit',
      appliedAt: new Date(),
      appliedCommitSha: found.commitSha,
      appliedReviewId: found.reviewId,
      applyStartedAt: null,
      applyError: null,
      applyClosedCheck: null,
      ...clearedApplyWait,
      ...clearedUnconfirmedApply,
    })
    .where(unchangedSince(target))
    .returning({ id: patchRequests.id });
  return updated.length > 0;
}

/**
 * Records that the check found no commit or review (`not_found`) or could not read GitHub
 * (`not_checked`). `not_found` clears the unconfirmed write, as an apply does when GitHub shows
 * that it did not take effect. `not_checked` keeps it, so an apply after a reopen looks for it
 * first. Returns false, and changes nothing, when the request changed since the read.
 */
export async function recordClosedCheck(
  db: Database,
  target: ClosedCheckTarget,
  outcome: ClosedApplyCheck['outcome'],
): Promise<boolean> {
  const { unconfirmed } = target;
  const check: ClosedApplyCheck = {
    outcome,
    mode: unconfirmed.mode,
    commitSha: unconfirmed.commitSha,
    unconfirmedAt: new Date(unconfirmed.at).toISOString(),
    checkedAt: new Date().toISOString(),
  };
  const updated = await db
    .update(patchRequests)
    .set({ applyClosedCheck: check, ...(outcome === 'not_found' ? clearedUnconfirmedApply : {}) })
    .where(unchangedSince(target))
    .returning({ id: patchRequests.id });
  return updated.length > 0;
}
