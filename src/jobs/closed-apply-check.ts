import { and, eq, inArray, isNotNull, isNull, or, sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import {
  findResultAfterClose,
  recordClosedCheck,
  recordFoundApply,
  type ClosedCheckTarget,
} from '../apply/closed-apply-check.ts';
import { toUnconfirmedApply } from '../apply/unconfirmed-write.ts';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import { patchRequests, prRuns, type ClosedApplyCheck } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import {
  asInstallationUnavailable,
  findInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { splitRepository } from '../github/repository-name.ts';
import type { Logger } from '../logger.ts';
import { transactionDb, type PgBoss as Boss } from './boss.ts';
import {
  findPatchRequestInstallation,
  logRateLimitQueueFailure,
  queueAfterRateLimit,
  rateLimitedSince,
  type RateLimitOutcome,
  type RateLimitedWork,
} from './rate-limit-wait.ts';

export const closedApplyCheckQueue = 'closed-apply-check';

/** A patch request whose pull request closed while its last apply was unconfirmed or running. */
export const closedApplyCheckJobData = z.object({ patchRequestId: z.uuid(), rateLimitedSince });
export type ClosedApplyCheckJobData = z.infer<typeof closedApplyCheckJobData>;

/**
 * Three retries, after about 30 s, 1 min and 2 min (pg-boss's backoff), so a GitHub outage of a
 * few minutes does not end the check. NOTE: the delays are a judgment, not a measurement. A
 * rate limit uses no retry, because the check waits for it in a new job.
 */
export const closedApplyCheckQueueOptions = {
  retryLimit: 3,
  retryDelay: 30,
  retryBackoff: true,
  expireInSeconds: 5 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/** Seconds between the checks of whether an apply that claimed the request before the close ended. */
const claimPollSeconds = 60;

/** Minutes after which an apply claim counts as stale, as `staleApplyMinutes` in applyPatchRequest. */
const staleClaimMinutes = 10;

/**
 * Queues a check for each unapplied patch request of `runIds` whose last apply is unconfirmed
 * or still runs, in the caller's transaction, and returns how many it queued. A close calls it,
 * because an apply is rejected while the pull request is closed, so no apply would settle the
 * unconfirmed write. An apply that still runs may store an unconfirmed write when it ends.
 */
export async function queueClosedApplyChecks(tx: Transaction, boss: Boss, runIds: string[]): Promise<number> {
  if (runIds.length === 0) return 0;
  const requests = await tx
    .select({ id: patchRequests.id })
    .from(patchRequests)
    .where(
      and(
        inArray(patchRequests.runId, runIds),
        isNull(patchRequests.appliedAt),
        or(isNotNull(patchRequests.applyUnconfirmedAt), isNotNull(patchRequests.applyStartedAt)),
      ),
    );
  for (const request of requests) {
    await boss.send(closedApplyCheckQueue, { patchRequestId: request.id }, { db: transactionDb(tx) });
  }
  return requests.length;
}

/** The patch request and run fields that the check reads, with the times as PostgreSQL's text. */
type CheckedRequest = {
  id: string;
  runId: string;
  appliedAt: Date | null;
  claimedAt: string | null;
  claimStale: boolean;
  unconfirmedAt: string | null;
  unconfirmedMode: 'commit' | 'suggestions' | null;
  unconfirmedCommitSha: string | null;
  closedCheck: ClosedApplyCheck | null;
  installationId: number;
  repository: string;
  prNumber: number;
  headRef: string;
  headSha: string;
  prClosedAt: Date | null;
};

async function readRequest(db: Database, patchRequestId: string): Promise<CheckedRequest | null> {
  const [row] = await db
    .select({
      id: patchRequests.id,
      runId: patchRequests.runId,
      appliedAt: patchRequests.appliedAt,
      claimedAt: sql<string | null>`${patchRequests.applyStartedAt}::text`,
      claimStale: sql<boolean>`coalesce(${patchRequests.applyStartedAt}
        < now() - make_interval(mins => ${staleClaimMinutes}::int), false)`,
      unconfirmedAt: sql<string | null>`${patchRequests.applyUnconfirmedAt}::text`,
      unconfirmedMode: patchRequests.applyUnconfirmedMode,
      unconfirmedCommitSha: patchRequests.applyUnconfirmedCommitSha,
      closedCheck: patchRequests.applyClosedCheck,
      installationId: prRuns.installationId,
      repository: prRuns.repository,
      prNumber: prRuns.prNumber,
      headRef: prRuns.headRef,
      headSha: prRuns.headSha,
      prClosedAt: prRuns.prClosedAt,
    })
    .from(patchRequests)
    .innerJoin(prRuns, eq(prRuns.id, patchRequests.runId))
    .where(eq(patchRequests.id, patchRequestId));
  return row ?? null;
}

/** Returns why the check has nothing to do for `request`, or null when it checks. */
function skipReason(request: CheckedRequest | null): string | null {
  if (request === null) return 'the patch request no longer exists';
  if (request.appliedAt !== null) return 'the patch request is applied';
  if (request.prClosedAt === null) return 'the pull request was reopened, so the next apply checks';
  if (request.claimedAt === null && request.unconfirmedAt === null) return 'no apply is unconfirmed';
  const checkedAt = request.closedCheck?.checkedAt;
  if (checkedAt !== undefined && new Date(checkedAt) >= request.prClosedAt) {
    return 'a check after this close recorded its outcome already';
  }
  return null;
}

/**
 * Settles the unconfirmed apply of a patch request whose pull request closed, once. Applies are
 * rejected while the pull request is closed, so without this check the page would show that the
 * apply may have pushed for good. The check reads GitHub as the next apply does (see
 * `findResultAfterClose`) and never writes to GitHub. It records a commit or review that it
 * finds as the apply, and otherwise stores `applyClosedCheck` with outcome `not_found`.
 *
 * A failed read fails the job, so pg-boss retries it. After the last attempt, and at once for
 * a suspended or uninstalled installation or missing GitHub App settings, the check stores
 * outcome `not_checked`. A GitHub rate limit ends the job, on any attempt, and queues a new
 * check for when the limit lifts (see `waitForRateLimit`). While an apply that claimed the
 * request before the close still runs, the check queues itself again for a minute later, until
 * that apply ends or its claim goes stale.
 */
export async function handleClosedApplyCheckJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<ClosedApplyCheckJobData>,
): Promise<void> {
  const data = closedApplyCheckJobData.parse(job.data);
  const { patchRequestId } = data;
  const logger = context.logger.child({ jobId: job.id, patchRequestId, queue: closedApplyCheckQueue });
  const request = await readRequest(context.db, patchRequestId);
  const skipped = skipReason(request);
  if (skipped !== null || request === null) {
    logCompleted(logger, 'skipped', { reason: skipped });
    return;
  }
  if (request.claimedAt !== null && !request.claimStale) {
    const startAfter = new Date(Date.now() + claimPollSeconds * 1000);
    const nextJobId = await context.boss.send(closedApplyCheckQueue, { patchRequestId }, { startAfter });
    logCompleted(logger, 'requeued', { nextJobId, startAfter: startAfter.toISOString() });
    return;
  }
  const unconfirmed = toUnconfirmedApply(request);
  if (unconfirmed === null) {
    logCompleted(logger, 'skipped', { reason: 'no apply is unconfirmed' });
    return;
  }
  const target: ClosedCheckTarget = {
    patchRequestId,
    unconfirmed,
    staleClaim: request.claimedAt,
  };
  const fields = { unconfirmedMode: unconfirmed.mode, commitSha: unconfirmed.commitSha };

  const unavailable = await findInstallationUnavailable(context.db, request.installationId);
  if (unavailable) {
    await recordNotChecked(context.db, target, logger, { ...fields, reason: unavailable.message });
    return;
  }
  let found: { commitSha: string | null; reviewId: number | null };
  try {
    const github = requireGitHubApp(context);
    const octokit = await github.installationOctokit(request.installationId);
    const [owner, repo] = splitRepository(request.repository);
    found = await findResultAfterClose(octokit, unconfirmed, {
      branch: request.headRef,
      review: {
        owner,
        repo,
        pullNumber: request.prNumber,
        headSha: request.headSha,
        patchRequestId,
        app: github,
      },
    });
  } catch (error) {
    const finalAttempt = job.retryCount >= job.retryLimit;
    const unavailableError = asInstallationUnavailable(error);
    if (unavailableError) await recordInstallationUnavailable(context.db, unavailableError);
    const rateLimit = unavailableError ? null : asGitHubRateLimit(error);
    if (rateLimit) {
      await waitForRateLimit(context, { ...job, data }, target, { rateLimit, error }, logger, fields);
      return;
    }
    // A retry cannot help an unavailable installation or missing GitHub App settings.
    const ends = finalAttempt || unavailableError !== null || error instanceof ConfigError;
    const safe = toSafeError(error);
    logger.error(
      {
        event: 'job.closed_apply_check.failed',
        ...fields,
        err: safe,
        attempt: job.retryCount,
        finalAttempt: ends,
      },
      'reading GitHub to check the unconfirmed apply failed',
    );
    // pg-boss stores the thrown error in its job table, so it gets the safe message only.
    if (!ends) throw new Error(safe.message);
    await recordNotChecked(context.db, target, logger, { ...fields, reason: safe.message });
    return;
  }

  if (found.commitSha !== null || found.reviewId !== null) {
    const recorded = await recordFoundApply(context.db, target, found);
    logCompleted(logger, recorded ? 'applied' : 'skipped', {
      ...fields,
      ...found,
      ...(recorded ? {} : { reason: 'the patch request changed during the check' }),
    });
    return;
  }
  const recorded = await recordClosedCheck(context.db, target, 'not_found');
  logCompleted(logger, recorded ? 'not_found' : 'skipped', {
    ...fields,
    ...(recorded ? {} : { reason: 'the patch request changed during the check' }),
  });
}

/**
 * Queues a check of the patch request that starts when the rate limit lifts (see
 * `queueAfterRateLimit`), so the limit uses none of the job's retries. The check stores no job
 * id, so nothing is recorded on the request meanwhile, and the new check reads the request
 * again when it starts. A limit that lifts later than the maximum wait allows, or an
 * installation found suspended or uninstalled, stores outcome `not_checked` at once. Nothing is
 * queued when the check has nothing left to do, such as after a reopen. When queueing fails,
 * the job fails for a retry, or stores `not_checked` on its last attempt.
 */
async function waitForRateLimit(
  context: AppContext,
  job: { id: string; data: ClosedApplyCheckJobData; retryCount: number; retryLimit: number },
  target: ClosedCheckTarget,
  limited: { rateLimit: GitHubRateLimit; error: unknown },
  logger: Logger,
  fields: Record<string, unknown>,
): Promise<void> {
  const { patchRequestId } = job.data;
  const { rateLimit, error } = limited;
  const work: RateLimitedWork = {
    findInstallation: (tx) => findPatchRequestInstallation(tx, patchRequestId),
    async lockAndCheck(tx) {
      // An apply after a reopen claims the request with an update, so the row lock orders the
      // two: the apply comes first and is seen here, or it waits for this commit.
      await tx
        .select({ id: patchRequests.id })
        .from(patchRequests)
        .where(eq(patchRequests.id, patchRequestId))
        .for('update');
      const request = await readRequest(tx, patchRequestId);
      if (request === null) return { kind: 'gone' };
      const skipped = skipReason(request);
      return skipped === null ? null : { kind: 'replaced', reason: skipped };
    },
    async recordNext() {
      // The request has no column for its check's job, and the pages show no wait for it.
    },
  };
  const rateLimitedJob = {
    queue: closedApplyCheckQueue,
    id: job.id,
    data: job.data,
    event: 'job.closed_apply_check',
  };
  let outcome: RateLimitOutcome;
  try {
    outcome = await queueAfterRateLimit(context, rateLimitedJob, rateLimit, error, logger, work);
  } catch (queueError) {
    // The transaction rolled back, so pg-boss retries this job unless this was its last attempt.
    logRateLimitQueueFailure(logger, 'job.closed_apply_check', queueError, rateLimit, job);
    if (job.retryCount < job.retryLimit) throw new Error(toSafeError(queueError).message);
    await recordNotChecked(context.db, target, logger, { ...fields, reason: toSafeError(error).message });
    return;
  }

  if (outcome.kind === 'too_long') {
    await recordNotChecked(context.db, target, logger, { ...fields, reason: outcome.error.message });
  } else if (outcome.kind === 'unavailable') {
    await recordNotChecked(context.db, target, logger, { ...fields, reason: outcome.unavailable.message });
  } else if (outcome.kind === 'gone') {
    logCompleted(logger, 'skipped', { reason: 'the patch request no longer exists' });
  } else if (outcome.kind === 'replaced') {
    logCompleted(logger, 'skipped', { ...fields, reason: outcome.reason });
  }
}

/**
 * Stores outcome `not_checked` for a check whose last attempt ended without an outcome, such as
 * one whose worker died. Changes nothing when the check had nothing to do or an apply runs.
 */
export async function recordUnfinishedCheck(db: Database, patchRequestId: string): Promise<void> {
  const request = await readRequest(db, patchRequestId);
  if (request === null || skipReason(request) !== null) return;
  if (request.claimedAt !== null && !request.claimStale) return;
  const unconfirmed = toUnconfirmedApply(request);
  if (unconfirmed === null) return;
  await recordClosedCheck(db, { patchRequestId, unconfirmed, staleClaim: request.claimedAt }, 'not_checked');
}

async function recordNotChecked(
  db: Database,
  target: ClosedCheckTarget,
  logger: Logger,
  fields: Record<string, unknown>,
): Promise<void> {
  const recorded = await recordClosedCheck(db, target, 'not_checked');
  logCompleted(logger, recorded ? 'not_checked' : 'skipped', {
    ...fields,
    ...(recorded ? {} : { reason: 'the patch request changed during the check' }),
  });
}

const completedMessages = {
  applied: 'found the unconfirmed apply on GitHub after the pull request closed, and recorded it',
  not_found: 'GitHub shows that the unconfirmed apply did not take effect',
  not_checked: 'the pull request closed before the unconfirmed apply could be checked',
  requeued: 'an apply that started before the close still runs, so the check runs again later',
  skipped: 'the unconfirmed apply check had nothing to do',
} as const;

function logCompleted(
  logger: Logger,
  status: keyof typeof completedMessages,
  fields: Record<string, unknown>,
): void {
  const level = status === 'not_checked' ? 'warn' : 'info';
  logger[level]({ event: 'job.closed_apply_check.completed', status, ...fields }, completedMessages[status]);
}
