import { z } from 'zod';
import type { ApplyMode } from '../db/schema/index.ts';
import { pullRequestResponse } from '../github/pull-request-response.ts';
import { PullRequestClosedError } from '../runs/pull-request-closed.ts';
import { ApplyRejectedError } from './apply-rejected-error.ts';
import { BranchMovedError } from './commit-files.ts';

const { base } = pullRequestResponse.shape;

/** The fields of GitHub's `pulls.get` response that Apply reads (see pullRequestResponse). */
export const pullRequestStateSchema = pullRequestResponse
  .pick({ state: true, closed_at: true, merged_at: true, updated_at: true, head: true })
  .extend({ base: base.pick({ repo: true }) });
export type PullRequestState = z.infer<typeof pullRequestStateSchema>;

/** The run that a patch request previewed: its base repository, pull request and head. */
export interface PreviewedRun {
  /** OWNER/NAME of the base repository, where a commit is written. */
  repository: string;
  prNumber: number;
  headRef: string;
  headSha: string;
}

export function closedRejection(error: PullRequestClosedError): ApplyRejectedError {
  return new ApplyRejectedError(
    'conflict',
    error.message,
    {
      repository: error.repository,
      pullRequest: error.prNumber,
      pullRequestClosedAt: error.closedAt.toISOString(),
    },
    'apply.pull_request_closed',
  );
}

export function deletedHeadRejection(): ApplyRejectedError {
  return new ApplyRejectedError(
    'bad_request',
    'Invalid mode "commit": the head repository of the pull request was deleted, so there ' +
      'is no branch to push to; use mode "suggestions".',
    undefined,
    'apply.head_repository_deleted',
  );
}

/** Builds the rejection of mode `commit` for a head branch in the fork `headRepository`. */
export function forkRejection(headRepository: string): ApplyRejectedError {
  return new ApplyRejectedError(
    'bad_request',
    `Invalid mode "commit": the head branch is in the fork ${headRepository}, where ` +
      'the app cannot push; use mode "suggestions".',
    undefined,
    'apply.head_in_fork',
  );
}

function notOpenRejection(pullRequest: PullRequestState, run: PreviewedRun): ApplyRejectedError {
  // updated_at replaces a missing closed_at, as in the `closed` webhook handler.
  const closedAt = new Date(pullRequest.closed_at ?? pullRequest.updated_at);
  const closed = new PullRequestClosedError(run.repository, run.prNumber, closedAt);
  if (pullRequest.merged_at === null) return closedRejection(closed);
  const mergedAt = new Date(pullRequest.merged_at);
  return new ApplyRejectedError(
    'conflict',
    `Pull request ${run.repository}#${run.prNumber} was merged at ${mergedAt.toISOString()}, ` +
      'so fixes can no longer be applied to it. Request fixes on a new pull request.',
    {
      repository: run.repository,
      pullRequest: run.prNumber,
      pullRequestClosedAt: closedAt.toISOString(),
      pullRequestMergedAt: mergedAt.toISOString(),
    },
    'apply.pull_request_merged',
  );
}

/**
 * Checks the pull request as GitHub returned it just before the apply writes, and returns the
 * mode to apply in. That is `requestedMode` when given. Otherwise it is `commit` when the head
 * branch is in the base repository, and `suggestions` when it is in a fork or was deleted.
 *
 * Raises ApplyRejectedError (conflict) when the pull request is closed or merged, and when mode
 * `commit` would write to another branch than the pull request's head branch. Raises it
 * (bad_request) for mode `commit` when the head repository is a fork or was deleted. Raises
 * BranchMovedError in either mode when the head is no longer `run.headSha`, because a review on
 * another commit places its comments on the wrong lines, and commitFiles would reject a commit
 * on the previewed head only after writing its objects. The caller recognizes such a head that
 * an earlier attempt of this apply pushed.
 */
export function checkPullRequest(
  pullRequest: PullRequestState,
  run: PreviewedRun,
  requestedMode: ApplyMode | undefined,
): ApplyMode {
  if (pullRequest.state !== 'open') throw notOpenRejection(pullRequest, run);

  const headRepository = pullRequest.head.repo?.full_name ?? null;
  // Compared by id, because a rename changes both names on GitHub before its repository event
  // renames the stored run.
  const sameRepository = pullRequest.head.repo?.id === pullRequest.base.repo.id;
  const mode = requestedMode ?? (sameRepository ? 'commit' : 'suggestions');
  if (mode === 'suggestions') {
    if (pullRequest.head.sha !== run.headSha) {
      throw new BranchMovedError(
        `Pull request #${run.prNumber} moved from ${run.headSha} to ` +
          `${pullRequest.head.sha} since the preview.`,
      );
    }
    return mode;
  }

  if (headRepository === null) throw deletedHeadRejection();
  if (!sameRepository) throw forkRejection(headRepository);
  if (pullRequest.head.ref !== run.headRef) {
    throw new ApplyRejectedError(
      'conflict',
      `Pull request ${run.repository}#${run.prNumber} has the head branch ` +
        `${pullRequest.head.ref} on GitHub, but the preview was made for branch ` +
        `${run.headRef}, so nothing was committed. Apply with {"mode": "suggestions"} to ` +
        'post the fixes as a review.',
      undefined,
      'apply.head_branch_changed',
    );
  }
  // Checked before any blob, tree or commit is created, because commitFiles reads the branch
  // only after writing them, and a moved branch would leave them unreferenced. commitFiles
  // checks the branch again, because it can move after this read.
  if (pullRequest.head.sha !== run.headSha) {
    throw new BranchMovedError(
      `Branch ${run.headRef} moved from ${run.headSha} to ${pullRequest.head.sha} since the ` +
        'preview.',
    );
  }
  return mode;
}
