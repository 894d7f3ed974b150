import type { Transaction } from '../db/client.ts';
import type { GitHubApp } from '../github/app.ts';
import type { PgBoss } from '../jobs/boss.ts';
import { queuePullRequestConfirmation } from '../jobs/confirm-pull-request-queue.ts';
import type { Logger } from '../logger.ts';
import type { PullRequestPayload } from './pull-request.ts';

/** Logger and GitHub App client that a pull request event needs to queue a check with GitHub. */
export interface ConfirmContext {
  logger: Logger;
  github: GitHubApp | null;
}

/**
 * Returns whether two times fall in the same second. GitHub's timestamps have whole seconds,
 * so two events of the same second cannot be ordered by them.
 */
export function isSameSecond(a: Date, b: Date): boolean {
  return Math.floor(a.getTime() / 1000) === Math.floor(b.getTime() / 1000);
}

/**
 * Queues a check of the pull request with GitHub in the event's transaction, because the event
 * changed the closed mark or the base branch while the stored state has a time in the same
 * second. Without GitHub App credentials it queues nothing and logs a warning that the state
 * follows the order in which the events arrived.
 */
export async function queueConfirmation(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
  ties: string[],
  context: ConfirmContext,
): Promise<void> {
  const { repository, number: prNumber } = payload;
  const installationId = payload.installation?.id;
  const fields = {
    event: 'pull_request.unconfirmed',
    repository: repository.full_name,
    prNumber,
    action: payload.action,
    ties,
  };
  if (!context.github || installationId === undefined) {
    context.logger.warn(
      fields,
      context.github
        ? 'the pull request event names no app installation, so the pull request keeps the ' +
            'state of its events in the order they arrived, without a check with GitHub'
        : 'GitHub App credentials are not configured, so the pull request keeps the state of ' +
            'its events in the order they arrived, without a check with GitHub. Set APP_ID and ' +
            'PRIVATE_KEY (or PRIVATE_KEY_PATH) and restart.',
    );
    return;
  }
  await queuePullRequestConfirmation(tx, boss, {
    installationId,
    repositoryId: repository.id,
    repository: repository.full_name,
    prNumber,
  });
}
