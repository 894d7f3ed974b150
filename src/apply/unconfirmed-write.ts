import type { Octokit } from '@octokit/rest';
import { and, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { patchRequests, type ApplyMode } from '../db/schema/index.ts';
import { readFailedRequest } from '../github/request-errors.ts';
import { ApplyUnconfirmedError } from './apply-rejected-error.ts';
import { findCommitOnBranch } from './commit-files.ts';
import { asGitHubRejection, describeFailedRequest } from './github-rejection.ts';
import { findPostedReview, type SuggestionTarget } from './suggestion-review.ts';
import { isRateLimitOrUnavailable, UnconfirmedWriteError } from './unconfirmed-write-error.ts';

/** The write of an earlier apply whose outcome is unknown, as the patch request stores it. */
export interface UnconfirmedApply {
  /** PostgreSQL's text form of `applyUnconfirmedAt`, which clearing it compares. */
  at: string;
  mode: ApplyMode;
  /** For mode `commit`, the commit that the ref update named. */
  commitSha: string | null;
}

/**
 * Column values that keep the outcome of `error` on the patch request. An error about the check
 * of an earlier write (a null `writeError`) changes nothing, because that write stays stored.
 */
export function unconfirmedValues(
  error: UnconfirmedWriteError,
): Partial<typeof patchRequests.$inferInsert> {
  if (error.writeError === null) return {};
  return {
    applyUnconfirmedAt: new Date(),
    applyUnconfirmedMode: error.mode,
    applyUnconfirmedCommitSha: error.commitSha,
  };
}

/** Column values of a patch request without an unconfirmed write. */
export const clearedUnconfirmedApply = {
  applyUnconfirmedAt: null,
  applyUnconfirmedMode: null,
  applyUnconfirmedCommitSha: null,
} as const;

/** Converts the unconfirmed columns that a claim returned into an UnconfirmedApply, or null. */
export function toUnconfirmedApply(row: {
  unconfirmedAt: string | null;
  unconfirmedMode: ApplyMode | null;
  unconfirmedCommitSha: string | null;
}): UnconfirmedApply | null {
  if (row.unconfirmedAt === null || row.unconfirmedMode === null) return null;
  return { at: row.unconfirmedAt, mode: row.unconfirmedMode, commitSha: row.unconfirmedCommitSha };
}

/**
 * Looks on GitHub for the result of the unconfirmed write: the commit on the head branch `branch`
 * (at its tip or below commits pushed since), or the patch request's review. Returns null for
 * both when GitHub shows that the write did not take effect. A failed read raises
 * UnconfirmedWriteError with a null `writeError`, unless GitHub rate-limited it or reported the
 * installation suspended or uninstalled, whose errors are raised as they are, so the apply waits
 * for the limit or records the installation. The write stays stored in every case.
 */
export async function findUnconfirmedResult(
  octokit: Octokit,
  unconfirmed: UnconfirmedApply,
  target: { branch: string; review: SuggestionTarget },
): Promise<{ commitSha: string | null; reviewId: number | null }> {
  try {
    return await readUnconfirmedResult(octokit, unconfirmed, target);
  } catch (error) {
    if (isRateLimitOrUnavailable(error)) throw error;
    throw new UnconfirmedWriteError(unconfirmed.mode, unconfirmed.commitSha, null, error);
  }
}

async function readUnconfirmedResult(
  octokit: Octokit,
  unconfirmed: UnconfirmedApply,
  target: { branch: string; review: SuggestionTarget },
): Promise<{ commitSha: string | null; reviewId: number | null }> {
  if (unconfirmed.mode === 'suggestions') {
    return { commitSha: null, reviewId: await findPostedReview(octokit, target.review) };
  }
  if (unconfirmed.commitSha === null) return { commitSha: null, reviewId: null };
  const { owner, repo } = target.review;
  const commitSha = await findCommitOnBranch(octokit, {
    owner,
    repo,
    branch: target.branch,
    commitSha: unconfirmed.commitSha,
  });
  return { commitSha, reviewId: null };
}

/**
 * Clears the unconfirmed write `unconfirmed` of patch request `patchRequestId` after GitHub
 * showed that it did not take effect. Only the apply whose claim was taken at `claimedAt` clears
 * it, and only while it is the write that this apply looked for.
 */
export async function clearUnconfirmedApply(
  db: Database,
  patchRequestId: string,
  claimedAt: string,
  unconfirmed: UnconfirmedApply,
): Promise<void> {
  await db
    .update(patchRequests)
    .set(clearedUnconfirmedApply)
    .where(
      and(
        eq(patchRequests.id, patchRequestId),
        sql`${patchRequests.applyStartedAt} = ${claimedAt}::timestamptz`,
        sql`${patchRequests.applyUnconfirmedAt} = ${unconfirmed.at}::timestamptz`,
      ),
    );
}

/**
 * Builds the rejection of an apply that ended with `error`. It names the failed write, if any,
 * and the failed read, and states that the fixes may have been applied and that applying again
 * records the commit or review when GitHub has it and writes only when it does not.
 */
export function unconfirmedRejection(
  error: UnconfirmedWriteError,
  patchRequestId: string,
): ApplyUnconfirmedError {
  const read = describeFailedRequest(error.readError);
  let outcome: string;
  if (error.writeError === null) {
    outcome =
      error.mode === 'commit'
        ? `An earlier apply may have pushed commit ${error.commitSha}, which GitHub did not ` +
          `confirm. Reading the branch to check failed: ${read}.`
        : 'An earlier apply may have posted the review, which GitHub did not confirm. Reading ' +
          `the pull request's reviews to check failed: ${read}.`;
  } else {
    const write = describeFailedRequest(error.writeError);
    outcome =
      error.mode === 'commit'
        ? `${write}, so the branch may have moved to commit ${error.commitSha}. Reading the ` +
          `branch to check failed: ${read}.`
        : `${write}, so GitHub may have posted the review. Reading the pull request's reviews ` +
          `to check failed: ${read}.`;
  }
  const next =
    error.mode === 'commit'
      ? 'records that commit if the branch has it, and commits the fixes only if it does not.'
      : 'records that review if the pull request has it, and posts the review only if it does not.';
  return new ApplyUnconfirmedError(
    'bad_gateway',
    `${outcome} Patch request ${patchRequestId} may have been applied. Apply it again once ` +
      `GitHub responds: the apply ${next}`,
    {
      github: asGitHubRejection(error.writeError) ?? undefined,
      confirmingRead: asGitHubRejection(error.readError) ?? undefined,
      applyUnconfirmed: { mode: error.mode, commitSha: error.commitSha },
    },
    readFailedRequest(error.readError),
  );
}
