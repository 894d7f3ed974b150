import type { AppContext } from '../context.ts';
import { confirmDelaySeconds, confirmInstallationQueue } from './confirm-installation.ts';
import {
  confirmPullRequestDelaySeconds,
  confirmPullRequestQueue,
} from './confirm-pull-request-queue.ts';
import { startCheckQueuedBehind } from './keyed-checks.ts';
import { resumeDelaySeconds, resumeInstallationQueue } from './resume-installation-queue.ts';

/** Seconds from an event to its check, per check queue. */
const checkDelaySeconds = new Map([
  [confirmInstallationQueue, confirmDelaySeconds],
  [confirmPullRequestQueue, confirmPullRequestDelaySeconds],
  [resumeInstallationQueue, resumeDelaySeconds],
]);

/**
 * Queues whose jobs check one installation, one pull request, or the open pull requests of one
 * installation each with GitHub (see keyed-checks.ts).
 */
export const checkQueues = [...checkDelaySeconds.keys()];

/**
 * Moves up the check queued behind check `job` once `job` ended or was failed (see
 * `startCheckQueuedBehind`). Does nothing for a job of another queue or a job without a key.
 */
export async function startCheckQueuedAfter(
  context: Pick<AppContext, 'db' | 'logger'>,
  job: { id: string; name: string; singletonKey: string | null },
): Promise<void> {
  const delaySeconds = checkDelaySeconds.get(job.name);
  if (delaySeconds === undefined || job.singletonKey === null) return;
  await startCheckQueuedBehind(context.db, context.logger, {
    queue: job.name,
    key: job.singletonKey,
    endedJobId: job.id,
    delaySeconds,
  });
}
