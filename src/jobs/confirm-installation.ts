import { eq } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import { installations } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { githubId } from '../events/github-id.ts';
import {
  fetchInstallationState,
  type GitHubInstallationState,
} from '../github/installation-state.ts';
import { asGitHubRateLimit } from '../github/rate-limit.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { stopInstallationWork } from '../runs/cancel-installation-work.ts';
import { findRunInstallation } from '../runs/visible-runs.ts';
import { transactionDb } from './boss.ts';
import {
  checkQueueOptions,
  deferCheck,
  findLaterCheck,
  findRunningCheck,
} from './keyed-checks.ts';
import { rateLimitFields } from './rate-limit-wait.ts';
import { queueInstallationResume } from './resume-installation-queue.ts';

export const confirmInstallationQueue = 'confirm-installation';

export const confirmInstallationJobData = z.object({ installationId: githubId });
export type ConfirmInstallationJobData = z.infer<typeof confirmInstallationJobData>;

/**
 * Retries of installation checks (see checkQueueOptions). The queue's policy is
 * `checkQueuePolicy`, with the installation id as singleton key: a burst of events queues one
 * check, an event during a running check queues one more, and the handler runs one check of an
 * installation at a time.
 */
export const confirmInstallationQueueOptions = {
  ...checkQueueOptions,
} satisfies Omit<PgBoss.Queue, 'name' | 'policy'>;

/**
 * Seconds between an installation event and the check of its state with GitHub. The delay gives
 * GitHub's API time to return the state that the event announced, and events that arrive
 * within it share one check.
 * NOTE: the value is a guess, because no GitHub document states how soon the API shows it.
 */
export const confirmDelaySeconds = 10;

/**
 * Queues a check of the installation's state with GitHub in the caller's transaction, to start
 * at `startAfter` (seconds from now, or a time). Returns the job id, or null when a check of
 * this installation is queued already and will read GitHub after this event, because it has
 * not started.
 */
export async function queueInstallationConfirmation(
  tx: Transaction,
  boss: PgBoss,
  installationId: number,
  startAfter: number | Date = confirmDelaySeconds,
): Promise<string | null> {
  return boss.send(
    confirmInstallationQueue,
    { installationId } satisfies ConfirmInstallationJobData,
    {
      singletonKey: String(installationId),
      startAfter,
      db: transactionDb(tx),
    },
  );
}

/** Result of a check: the changes to the installation's row, or why it made none. */
type ConfirmOutcome =
  | { status: 'skipped'; reason: string }
  | { status: 'unchanged' }
  | {
      status: 'corrected';
      suspended: boolean;
      deleted: boolean;
      cancelled?: string;
      /**
       * The job that checks the open pull requests with GitHub because a suspension ended, or
       * null when one is queued already.
       */
      resumeJobId?: string | null;
    };

/**
 * Sets the installation's suspension and deletion marks to what GitHub reports now, because
 * GitHub does not deliver installation events in order. A suspension or uninstall found this
 * way cancels the installation's unfinished work as the event does. An active installation
 * gets both marks cleared, and work that an earlier event cancelled stays cancelled.
 *
 * A check that finds another check of the installation running reads nothing. It queues a
 * check to run after that one, or leaves it to a check queued already, and ends.
 *
 * Missing GitHub App credentials end the job with a warning, and the marks stay as the events
 * left them. A failed request to GitHub, including a rate limit, or a failed database write
 * fails the job, so pg-boss retries it with backoff. The marks stay as the events left them
 * meanwhile.
 */
export async function handleConfirmInstallationJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<ConfirmInstallationJobData>,
): Promise<void> {
  const { installationId } = confirmInstallationJobData.parse(job.data);
  const logger = context.logger.child({
    jobId: job.id,
    installationId,
    queue: confirmInstallationQueue,
  });
  // A check of a row that was removed since it was queued would spend a request of the app's
  // rate limit on nothing.
  const [recorded] = await context.db
    .select({ id: installations.id })
    .from(installations)
    .where(eq(installations.id, installationId));
  if (!recorded) {
    logger.info(
      { event: 'job.confirm_installation.completed', status: 'skipped', reason: 'installation not recorded' },
      'installation check finished',
    );
    return;
  }
  const running = await findRunningCheck(
    context.db,
    confirmInstallationQueue,
    String(installationId),
    job.id,
  );
  if (running) {
    await deferCheck(context.db, logger, {
      event: 'job.confirm_installation.deferred',
      subject: 'installation',
      queue: confirmInstallationQueue,
      key: String(installationId),
      delaySeconds: confirmDelaySeconds,
      runningJobId: running,
      queueNext: (tx, startAfter) =>
        queueInstallationConfirmation(tx, context.boss, installationId, startAfter),
    });
    return;
  }
  let state: GitHubInstallationState;
  let outcome: ConfirmOutcome;
  try {
    state = await fetchInstallationState(requireGitHubApp(context), installationId);
    outcome = await context.db.transaction((tx) =>
      applyInstallationState(tx, context.boss, job.id, installationId, state),
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.warn(
        { event: 'job.confirm_installation.not_configured', reason: error.message },
        'installation check skipped because GitHub App credentials are not configured, so the ' +
          'installation keeps the marks of its events',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = asGitHubRateLimit(error);
    logger.error(
      {
        event: 'job.confirm_installation.failed',
        err: toSafeError(error),
        attempt: job.retryCount,
        finalAttempt,
        ...(rateLimit ? rateLimitFields(rateLimit) : {}),
      },
      finalAttempt
        ? 'installation check failed for the last time, so the installation keeps the marks of ' +
            'its events until its next event, or until a token request finds it unavailable'
        : 'installation check failed, and it is retried with backoff',
    );
    throw error;
  }

  logger.info(
    { event: 'job.confirm_installation.completed', github: state.kind, ...outcome },
    outcome.status === 'corrected'
      ? 'installation marks corrected to the state GitHub reports'
      : 'installation check finished',
  );
}

/** Writes GitHub's `state` to the installation's row, unless another check is queued. */
async function applyInstallationState(
  tx: Transaction,
  boss: PgBoss,
  jobId: string,
  installationId: number,
  state: GitHubInstallationState,
): Promise<ConfirmOutcome> {
  // Locks the row as installation events do. An event that changed the row first has
  // committed when this returns. An event that comes later waits for this commit, and then
  // applies its own mark and queues another check.
  const row = await findRunInstallation(tx, installationId, { lockForUpdate: true });
  if (!row) return { status: 'skipped', reason: 'installation not recorded' };

  // A check of this installation that is queued, or that started during this one, leads to a
  // read of GitHub after this job's, because checks of an installation run one at a time. That
  // read decides. An event that committed after this job read GitHub has queued such a check.
  const later = await findLaterCheck(tx, confirmInstallationQueue, String(installationId), jobId);
  if (later) return { status: 'skipped', reason: later };

  const marks = {
    suspendedAt:
      state.kind === 'suspended'
        ? (row.suspendedAt ?? state.suspendedAt)
        : state.kind === 'deleted'
          ? row.suspendedAt
          : null,
    deletedAt: state.kind === 'deleted' ? (row.deletedAt ?? new Date()) : null,
  };
  if (marks.suspendedAt === row.suspendedAt && marks.deletedAt === row.deletedAt) {
    return { status: 'unchanged' };
  }
  await tx.update(installations).set(marks).where(eq(installations.id, installationId));
  const corrected = {
    status: 'corrected' as const,
    suspended: marks.suspendedAt !== null,
    deleted: marks.deletedAt !== null,
  };

  // The suspension that this check ends also blocked the webhook events of the installation's
  // pull requests, so they are checked as after an `unsuspend` event.
  const resumed = row.suspendedAt !== null && state.kind === 'active';
  if (resumed) {
    const resumeJobId = await queueInstallationResume(tx, boss, installationId);
    return { ...corrected, resumeJobId };
  }
  // Work is cancelled when the check finds the installation stopped while its row let work
  // start, as the `suspend` or `deleted` event would have done.
  const stoppedNow =
    (state.kind === 'deleted' && row.deletedAt === null) ||
    (state.kind === 'suspended' && row.suspendedAt === null);
  if (!stoppedNow) return corrected;
  const cancelled = await stopInstallationWork(tx, boss, {
    id: installationId,
    accountLogin: row.accountLogin,
    actorLogin: state.kind === 'suspended' ? state.suspendedBy : null,
    cause: state.kind === 'suspended' ? 'suspended' : 'uninstalled',
  });
  return { ...corrected, cancelled };
}
