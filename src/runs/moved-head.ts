import type { AppContext } from '../context.ts';
import type { prRuns } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { applyPullRequestEvent } from '../events/pull-request.ts';
import { headChangeEvent } from '../events/pull-request-from-github.ts';
import { fetchPullRequestState, type GitHubPullRequestState } from '../github/pull-request-state.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import {
  queuePullRequestConfirmation,
  type ConfirmPullRequestJobData,
} from '../jobs/confirm-pull-request-queue.ts';
import type { Logger } from '../logger.ts';
import { lockPullRequest } from './pull-request-lock.ts';

type PrRun = typeof prRuns.$inferSelect;

/**
 * Records the head commit that GitHub reports in place of `run.headSha`, whose `synchronize`
 * event was skipped, or lost while Fixwright was down. Apply calls it when it finds the branch
 * moved, and a preview job when it finds the head moved or the pull request closed before its
 * first model call. Afterwards the newest run that their messages point to exists, and `run`
 * takes no more paid previews.
 *
 * It applies the event of headChangeEvent to the pull request as GitHub returned it, which
 * queues the run of GitHub's head commit and supersedes `run`. `options.state` is that response
 * when the caller has read it already, and otherwise this reads it. The read or the event can
 * fail, or the response can show no head commit to record: a closed pull request, or GitHub's
 * API lagging behind the branch. It then queues a check of the pull request, which reads GitHub
 * again with retries and also applies a close. It logs its errors, with `options.source`
 * (default `apply`) as the prefix of their events, and throws none, because the caller rejects
 * or cancels its work either way.
 */
export async function recordMovedHead(
  context: AppContext,
  run: PrRun,
  logger: Logger,
  options: { state?: GitHubPullRequestState; source?: 'apply' | 'preview' } = {},
): Promise<void> {
  const source = options.source ?? 'apply';
  const target: ConfirmPullRequestJobData = {
    installationId: run.installationId,
    repositoryId: run.repositoryId,
    repository: run.repository,
    prNumber: run.prNumber,
  };
  let outcome: string | null = null;
  try {
    const state = options.state ?? (await fetchPullRequestState(requireGitHubApp(context), target));
    if (state.kind === 'found' && state.pullRequest.state === 'open') {
      const { pullRequest } = state;
      outcome = await context.db.transaction(async (tx) => {
        await lockPullRequest(tx, target.repositoryId, target.prNumber);
        const event = await headChangeEvent(tx, target, pullRequest);
        return event ? applyPullRequestEvent(tx, context.boss, event, []) : null;
      });
    }
  } catch (error) {
    logger.warn(
      { event: `${source}.newer_head_read_failed`, err: toSafeError(error) },
      'reading or recording the newer head commit of the pull request failed; a check of it is queued',
    );
  }
  if (outcome !== null) {
    logger.info({ event: `${source}.newer_head_recorded`, outcome }, 'recorded the newer head commit');
    return;
  }
  try {
    const checkJobId = await context.db.transaction((tx) =>
      queuePullRequestConfirmation(tx, context.boss, target),
    );
    logger.info(
      { event: `${source}.newer_head_check_queued`, checkJobId },
      'queued a check of the pull request with GitHub, which records its newer head commit or close',
    );
  } catch (error) {
    logger.error(
      { event: `${source}.newer_head_check_failed`, err: toSafeError(error) },
      'queueing a check of the pull request failed, so its newer head commit is analyzed only ' +
        'after its next event',
    );
  }
}
