import type { prRuns } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { GitHubApp } from '../github/app.ts';
import { asInstallationUnavailable } from '../github/installation-unavailable.ts';
import { fetchPullRequestState, type GitHubPullRequestState } from '../github/pull-request-state.ts';
import { asGitHubRateLimit } from '../github/rate-limit.ts';
import type { Logger } from '../logger.ts';

type PrRun = typeof prRuns.$inferSelect;

/**
 * Result of checkPreviewHead. `proceed` means that the preview calls the model. `cancel` gives
 * the reason to store on the cancelled preview, and `state` is the pull request to record with
 * recordMovedHead when GitHub's head moved or the pull request is closed, or null when there is
 * nothing to record (a 404).
 */
export type PreviewHeadCheck =
  | { outcome: 'proceed' }
  | { outcome: 'cancel'; reason: string; state: GitHubPullRequestState | null };

/** Length of the abbreviated commit shas in messages, as GitHub shows them. */
const shortShaLength = 7;

/**
 * Reads the pull request of `run` from GitHub (one GET /repos/{owner}/{repo}/pulls/{number})
 * and decides whether a preview of the run may call the model. A pull request whose head commit
 * is no longer `run.headSha`, because the `synchronize` event of a push was never delivered,
 * would get a preview that Apply rejects, so it is cancelled. So is a closed pull request and
 * one that GitHub reports missing (404).
 *
 * A read that fails otherwise does not stop the preview, because Apply reads the pull request
 * again before it writes. Such failures are a server error, no response, an invalid response, a
 * rate limit that Octokit did not wait out, and a pull request other than the one requested.
 * They are logged as `preview.head_check_failed` and are neither retried nor counted as a failed
 * attempt. A suspended or uninstalled installation is thrown, as a file read would throw it.
 */
export async function checkPreviewHead(
  app: GitHubApp,
  run: PrRun,
  logger: Logger,
): Promise<PreviewHeadCheck> {
  const pullRequestName = `${run.repository}#${run.prNumber}`;
  let state: GitHubPullRequestState;
  try {
    state = await fetchPullRequestState(app, run);
  } catch (error) {
    if (asInstallationUnavailable(error)) throw error;
    const rateLimit = asGitHubRateLimit(error);
    logger.warn(
      {
        event: 'preview.head_check_failed',
        err: toSafeError(error),
        ...(rateLimit ? { rateLimitedUntil: new Date(rateLimit.liftsAt).toISOString() } : {}),
      },
      `reading pull request ${pullRequestName} from GitHub failed, so the preview goes on ` +
        'without checking its head commit; Apply checks it before it writes',
    );
    return { outcome: 'proceed' };
  }

  if (state.kind === 'not_found') {
    logger.warn(
      { event: 'preview.pull_request_not_found' },
      `GitHub has no pull request ${pullRequestName}; cancelled the preview`,
    );
    return {
      outcome: 'cancel',
      reason:
        `Cancelled: GitHub returned 404 for pull request ${pullRequestName}. The pull request or ` +
        'its repository was deleted, or the app can no longer read the repository, so a fix ' +
        'could not be applied.',
      state: null,
    };
  }
  if (state.kind === 'other') {
    logger.warn(
      { event: 'preview.head_check_failed', err: { message: state.message } },
      'GitHub returned another pull request, so the preview goes on without checking its head commit',
    );
    return { outcome: 'proceed' };
  }

  const { pullRequest } = state;
  if (pullRequest.state === 'closed') {
    logger.warn(
      { event: 'preview.pull_request_closed', mergedAt: pullRequest.merged_at ?? null },
      `GitHub shows pull request ${pullRequestName} closed; cancelled the preview`,
    );
    const reason = pullRequest.merged_at
      ? `Cancelled because pull request ${pullRequestName} was merged, so fixes can no longer be ` +
        'applied to it. Request fixes on a new pull request.'
      : `Cancelled because pull request ${pullRequestName} was closed. Reopen it on GitHub, then ` +
        'request the fix again.';
    return { outcome: 'cancel', reason, state };
  }
  if (pullRequest.head.sha !== run.headSha) {
    logger.warn(
      { event: 'preview.head_moved', runHeadSha: run.headSha, githubHeadSha: pullRequest.head.sha },
      `GitHub shows a newer head commit of pull request ${pullRequestName}; cancelled the preview`,
    );
    // The head can also move back to an older commit, as after a force push, so the reason does
    // not call it newer.
    const head = pullRequest.head.sha.slice(0, shortShaLength);
    return {
      outcome: 'cancel',
      reason: `Cancelled: the pull request's head moved to commit ${head}; request the fix on the newest run.`,
      state,
    };
  }
  return { outcome: 'proceed' };
}
