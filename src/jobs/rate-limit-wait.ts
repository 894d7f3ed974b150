import { eq, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import {
  findInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import type { GitHubRateLimit } from '../github/rate-limit.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { patchRequests, prRuns } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { transactionDb } from './boss.ts';

/**
 * Job data field: time in milliseconds since 1970 of the first rate-limited response of the
 * work that the job continues, set on the jobs that wait for a rate limit to lift.
 */
export const rateLimitedSince = z.number().int().nonnegative().optional();

/** Outcome of a rate-limited job's attempt to queue its successor. */
export type RateLimitOutcome =
  | { kind: 'too_long'; error: RateLimitTooLongError }
  | { kind: 'gone' }
  | { kind: 'unavailable'; unavailable: InstallationUnavailableError }
  | { kind: 'replaced'; reason: string }
  | { kind: 'queued'; jobId: string | null };

/** The database row that a job works on, such as a run, seen from the successor's transaction. */
export interface RateLimitedWork {
  /** Returns the id of the installation the work belongs to, or null when the work is gone. */
  findInstallation(tx: Transaction): Promise<number | null>;
  /**
   * Locks the work's row and returns why the job no longer owns the work, or null while it
   * does. Called after the installation's row is locked, the order in which a suspend locks.
   */
  lockAndCheck(tx: Transaction): Promise<Exclude<RateLimitOutcome, { kind: 'queued' | 'too_long' }> | null>;
  /** Stores the successor's id and its start time on the work's row. */
  recordNext(tx: Transaction, nextJobId: string | null, startAfter: Date): Promise<void>;
}

/**
 * A rate-limited job: its queue, id, data and the prefix of its log events (`job.report`). The
 * id is null for work that no job runs yet, such as an apply that an API request started.
 */
export interface RateLimitedJob<Data extends { rateLimitedSince?: number }> {
  queue: string;
  id: string | null;
  data: Data;
  event: string;
}

/** Returns the installation of a preview's run, for the findInstallation of its jobs' waits. */
export async function findPatchRequestInstallation(
  tx: Transaction,
  patchRequestId: string,
): Promise<number | null> {
  const [row] = await tx
    .select({ installationId: prRuns.installationId })
    .from(patchRequests)
    .innerJoin(prRuns, eq(prRuns.id, patchRequests.runId))
    .where(eq(patchRequests.id, patchRequestId));
  return row?.installationId ?? null;
}

/** Log fields that describe a rate limit and the wait for it. */
export function rateLimitFields(rateLimit: GitHubRateLimit, since?: number) {
  return {
    rateLimit: rateLimit.kind,
    liftsAt: new Date(rateLimit.liftsAt).toISOString(),
    ...(since === undefined ? {} : { rateLimitedSince: new Date(since).toISOString() }),
  };
}

/** Logs `<event>.failed` for a job whose successor could not be queued after a rate limit. */
export function logRateLimitQueueFailure(
  logger: Logger,
  event: string,
  queueError: unknown,
  rateLimit: GitHubRateLimit,
  job: { retryCount: number; retryLimit: number },
): void {
  logger.error(
    {
      event: `${event}.failed`,
      err: toSafeError(queueError),
      ...rateLimitFields(rateLimit),
      attempt: job.retryCount,
      finalAttempt: job.retryCount >= job.retryLimit,
    },
    'queueing the job for after the GitHub rate limit failed',
  );
}

/**
 * Returns whether `rateLimit` lifts later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS
 * (`maxWaitSeconds`) after `since`, the work's first rate-limited response in milliseconds since
 * 1970, or waiting is turned off (0). Such work fails instead of waiting.
 */
export function waitsTooLong(rateLimit: GitHubRateLimit, since: number, maxWaitSeconds: number): boolean {
  return maxWaitSeconds === 0 || rateLimit.liftsAt - since > maxWaitSeconds * 1000;
}

/** A wait longer than any rate limit of GitHub's: 366 days. */
const implausibleWaitMs = 366 * 24 * 3600 * 1000;

/**
 * A GitHub rate limit that lifts later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS allows. Jobs store
 * its message on their work and end without a retry, because a retry within minutes would hit
 * the same limit.
 */
export class RateLimitTooLongError extends Error {
  override name = 'RateLimitTooLongError';

  constructor(rateLimit: GitHubRateLimit, maxWaitSeconds: number, now = Date.now()) {
    super(describeTooLong(rateLimit.liftsAt, maxWaitSeconds, now));
  }
}

function describeTooLong(liftsAt: number, maxWaitSeconds: number, now: number): string {
  const lift = new Date(liftsAt).toISOString();
  if (liftsAt - now > implausibleWaitMs) {
    return (
      `GitHub rate-limited the installation until ${lift}, more than a year away. No GitHub ` +
      'rate limit lasts that long, so GitHub, or a proxy between this server and ' +
      'GITHUB_API_URL, may be failing. Try again once it responds normally.'
    );
  }
  if (maxWaitSeconds === 0) {
    return (
      `GitHub rate-limited the installation until ${lift}, and waiting for rate limits is ` +
      'turned off (GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS=0). Try again after that time.'
    );
  }
  return (
    `GitHub rate-limited the installation until ${lift}, later than ` +
    `GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS (${maxWaitSeconds} s) after the first ` +
    'rate-limited response allows. Try again after that time.'
  );
}

/**
 * Queues a successor of `job` that starts when the rate limit lifts, and stores its id on the
 * work, so a suspend or a newer job can cancel it. The job that hit the limit then completes,
 * so no worker waits. Returns `too_long`, and queues nothing, when the limit lifts more than
 * GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS after the work's first rate-limited response. The caller
 * then stores that error on the work and ends the job.
 *
 * The successor is queued in one transaction with these checks, and nothing is queued when
 * one fails: the work still exists, its installation is active, the job still owns the work,
 * and pg-boss has not cancelled the job. The last check catches a suspend that cancelled the
 * job while it ran, also when the app was unsuspended since. Throws when the transaction
 * fails, which rolls back the successor.
 */
export async function queueAfterRateLimit<Data extends { rateLimitedSince?: number }>(
  context: AppContext,
  job: RateLimitedJob<Data>,
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
  work: RateLimitedWork,
): Promise<RateLimitOutcome> {
  const since = job.data.rateLimitedSince ?? Date.now();
  const maxWaitSeconds = context.config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS;
  const fields = rateLimitFields(rateLimit, since);
  if (waitsTooLong(rateLimit, since, maxWaitSeconds)) {
    logger.warn(
      { event: `${job.event}.rate_limit_too_long`, ...fields, maxWaitSeconds, err: error },
      'GitHub rate limit lifts later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS allows, so the job fails without a retry',
    );
    return { kind: 'too_long', error: new RateLimitTooLongError(rateLimit, maxWaitSeconds) };
  }

  const startAfter = new Date(rateLimit.liftsAt);
  const outcome = await context.db.transaction(async (tx): Promise<RateLimitOutcome> => {
    const installationId = await work.findInstallation(tx);
    if (installationId === null) return { kind: 'gone' };
    // Locks the installation's row, so a suspend or uninstall either comes first and is seen
    // here, or waits for this commit and then cancels the new job.
    const unavailable = await findInstallationUnavailable(tx, installationId);
    if (unavailable) return { kind: 'unavailable', unavailable };
    const lost = await work.lockAndCheck(tx);
    if (lost) return lost;
    if (job.id !== null) {
      const [state] = await tx.execute<{ state: string }>(
        sql`SELECT state FROM pgboss.job WHERE name = ${job.queue} AND id = ${job.id}`,
      );
      if (state?.state === 'cancelled') {
        return { kind: 'replaced', reason: `${job.queue} job ${job.id} was cancelled` };
      }
    }

    const data: Data = { ...job.data, rateLimitedSince: since };
    const nextJobId = await context.boss.send(job.queue, data, { startAfter, db: transactionDb(tx) });
    await work.recordNext(tx, nextJobId, startAfter);
    return { kind: 'queued', jobId: nextJobId };
  });
  if (outcome.kind === 'queued') {
    logger.warn(
      { event: `${job.event}.rate_limited`, ...fields, nextJobId: outcome.jobId, err: error },
      'GitHub rate-limited the job, which continues in a new job when the limit lifts',
    );
  }
  return outcome;
}
