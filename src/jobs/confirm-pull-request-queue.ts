import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { Transaction } from '../db/client.ts';
import { githubId } from '../events/github-id.ts';
import { repositoryFullName } from '../events/github-names.ts';
import { transactionDb } from './boss.ts';
import { checkQueueOptions } from './keyed-checks.ts';

export const confirmPullRequestQueue = 'confirm-pull-request';

/**
 * A pull request to read from GitHub. `repository` is OWNER/NAME at the time of the event, and
 * the job checks that GitHub's response has `repositoryId`.
 */
export const confirmPullRequestJobData = z.object({
  installationId: githubId,
  repositoryId: githubId,
  repository: repositoryFullName,
  prNumber: z.number().int().positive(),
});
export type ConfirmPullRequestJobData = z.infer<typeof confirmPullRequestJobData>;

/**
 * Retries as for installation checks (see checkQueueOptions). The queue's policy is
 * `checkQueuePolicy`, with `pullRequestCheckKey` as singleton key, so it keeps at most one
 * queued job per pull request, and the handler runs one check of a pull request at a time.
 */
export const confirmPullRequestQueueOptions = {
  ...checkQueueOptions,
} satisfies Omit<PgBoss.Queue, 'name' | 'policy'>;

/**
 * Seconds between a pull request event and the check of the pull request with GitHub, so that
 * the event that ties with it, delivered moments later, is applied first.
 * NOTE: the value is a guess, because GitHub documents no delivery delay.
 */
export const confirmPullRequestDelaySeconds = 10;

/** Returns the singleton key of the pull request's checks. */
export function pullRequestCheckKey(repositoryId: number, prNumber: number): string {
  return `${repositoryId}#${prNumber}`;
}

/**
 * Queues a check of the pull request with GitHub in the caller's transaction, to start at
 * `startAfter` (seconds from now, or a time). Returns the job id, or null when a check of this
 * pull request is queued already and has not started.
 */
export async function queuePullRequestConfirmation(
  tx: Transaction,
  boss: PgBoss,
  data: ConfirmPullRequestJobData,
  startAfter: number | Date = confirmPullRequestDelaySeconds,
): Promise<string | null> {
  return boss.send(confirmPullRequestQueue, data, {
    singletonKey: pullRequestCheckKey(data.repositoryId, data.prNumber),
    startAfter,
    db: transactionDb(tx),
  });
}
