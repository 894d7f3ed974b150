import type { patchRequests } from '../db/schema/index.ts';
import type { PgBoss } from '../jobs/boss.ts';
import { applyQueue } from '../jobs/apply.ts';
import { currentApplyWait, type ApplyWait } from './apply-wait.ts';

type StoredRequest = typeof patchRequests.$inferSelect;

/**
 * A failed attempt of a patch request's apply job that pg-boss retries at `retryAt`. The job
 * clears the stored wait when an attempt starts, so this is read from pg-boss.
 */
export interface ApplyRetry {
  retryAt: Date;
  failedAttempts: number;
  maxAttempts: number;
  /** The message of the last failed attempt, or null when pg-boss stored none. */
  error: string | null;
}

/**
 * Returns the message that pg-boss 10 stored in a failed job's `output`: `{ message }` from an
 * error that the handler threw, `{ value: { message } }` for a job past its time limit, and
 * `{ value: "…" }` for a job that a stopping worker failed.
 */
function failureMessage(output: unknown): string | null {
  if (typeof output !== 'object' || output === null) return null;
  const { message, value } = output as { message?: unknown; value?: unknown };
  if (typeof message === 'string') return message;
  if (typeof value === 'string') return value;
  return failureMessage(value);
}

/**
 * Reads from pg-boss whether the patch request's apply job failed an attempt and waits for its
 * retry. Returns null when no apply job is pending, when the request was applied or stored an
 * apply error, and when the job is in any other state, such as waiting to start or running.
 */
export async function findApplyRetry(boss: PgBoss, request: StoredRequest): Promise<ApplyRetry | null> {
  if (request.applyJobId === null || request.appliedAt !== null || request.applyError !== null) {
    return null;
  }
  const job = await boss.getJobById(applyQueue, request.applyJobId);
  if (job?.state !== 'retry') return null;
  return {
    retryAt: job.startAfter,
    // pg-boss counts retry_count up when it starts a retry, so it is one less than the failures.
    failedAttempts: job.retryCount + 1,
    maxAttempts: job.retryLimit + 1,
    error: failureMessage(job.output),
  };
}

/**
 * Returns the wait of the request's apply job that the pages and the API show: none while an
 * attempt failed and waits for its retry (`retry`). An attempt clears the stored wait in its
 * first statement, and the wait ended when the attempt started. So a wait stored next to a
 * retry is left by an attempt that failed at that statement, such as while the database was down.
 */
export function visibleApplyWait(request: StoredRequest, retry: ApplyRetry | null): ApplyWait | null {
  return retry === null ? currentApplyWait(request) : null;
}

/**
 * Builds the pages' line about an apply retry: the text before its time and the text after it.
 * Once the time has passed, the job only waits for a worker, and the line states that.
 */
export function describeApplyRetry(retry: ApplyRetry, now = new Date()): { before: string; after: string } {
  const failed =
    `Applying failed (attempt ${retry.failedAttempts} of ${retry.maxAttempts})` +
    `${retry.error ? `: ${retry.error}` : ''}.`;
  if (retry.retryAt.getTime() > now.getTime()) {
    return { before: `${failed} The apply job tries again at`, after: '.' };
  }
  return {
    before: `${failed} The apply job was due to try again at`,
    after: ', and does so as soon as a worker takes it.',
  };
}
