import type { AppContext } from '../context.ts';
import type { prRuns } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { applyPullRequestEvent } from '../events/pull-request.ts';
import { headChangeEvent } from '../events/pull-request-from-github.ts';
import { fetchPullRequestState } from '../github/pull-request-state.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import {
  queuePullRequestConfirmation,
  type ConfirmPullRequestJobData,
} from '../jobs/confirm-pull-request-queue.ts';
import type { Logger } from '../logger.ts';
import { lockPullRequest } from './pull-request-lock.ts';

type PrRun = typeof prRuns.$inferSelect;

/**
 * Records the head commit that an apply found on GitHub in place of `run.headSha`, whose
 * `synchronize` event was skipped, or lost while Fixwright was down. Afterwards the newest run
 * that the apply's rejection points to exists, and `run` takes no more paid previews.
 *
 * It reads the pull request from GitHub and applies the event of headChangeEvent, which queues
 * the run of GitHub's head commit and supersedes `run`. When the read fails, or shows no head
 * commit to record (GitHub's API can lag behind the branch), it queues a check of the pull
 * request, which reads GitHub again with retries. It logs its errors and throws none, because
 * the caller returns the apply's rejection either way.
 */
export async function recordMovedHead(
  context: AppContext,
  run: PrRun,
  logger: Logger,
): Promise<void> {
  const target: ConfirmPullRequestJobData = {
    installationId: run.installationId,
    repositoryId: run.repositoryId,
    repository: run.repository,
    prNumber: run.prNumber,
  };
  let outcome: string | null = null;
  try {
    const state = await fetchPullRequestState(requireGitHubApp(context), target);
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
      { event: 'apply.newer_head_read_failed', err: toSafeError(error) },
      'reading the pull request for its newer head commit failed; a check of it is queued',
    );
  }
  if (outcome !== null) {
    logger.info({ event: 'apply.newer_head_recorded', outcome }, 'recorded the newer head commit');
    return;
  }
  try {
    const checkJobId = await context.db.transaction((tx) =>
      queuePullRequestConfirmation(tx, context.boss, target),
    );
    logger.info(
      { event: 'apply.newer_head_check_queued', checkJobId },
      'queued a check of the pull request for its newer head commit',
    );
  } catch (error) {
    logger.error(
      { event: 'apply.newer_head_check_failed', err: toSafeError(error) },
      'queueing a check of the pull request failed, so its newer head commit is analyzed only ' +
        'after its next event',
    );
  }
}
