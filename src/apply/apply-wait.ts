import type { patchRequests } from '../db/schema/index.ts';
import { describeWait } from '../runs/run-rate-limit.ts';

type StoredRequest = typeof patchRequests.$inferSelect;

/**
 * Column values that clear both kinds of stored apply wait. The updates that start, replace,
 * cancel or apply the job `applyJobId` set them.
 */
export const clearedApplyWait = { applyRateLimitedUntil: null, applyClaimWaitUntil: null } as const;

/**
 * An apply job that waits to start: for a GitHub rate limit to lift (`rate_limit`), or for the
 * claim of another call to end (`other_apply`). `until` is the job's start time, which the end
 * of that claim moves to the time it ended.
 */
export interface ApplyWait {
  reason: 'rate_limit' | 'other_apply';
  until: Date;
}

/**
 * Returns when the rate limit lifts that the patch request's apply job waits for, or null when
 * no apply job waits: none was queued, it started, it was cancelled or the request is applied.
 */
export function applyRateLimitedUntil(request: StoredRequest): Date | null {
  if (request.appliedAt !== null || request.applyError !== null) return null;
  return request.applyRateLimitedUntil;
}

/**
 * Returns the wait of the patch request's apply job, or null when no apply job waits. A
 * request has one apply job at most, so at most one of the two stored waits is set.
 */
export function currentApplyWait(request: StoredRequest): ApplyWait | null {
  const rateLimitedUntil = applyRateLimitedUntil(request);
  if (rateLimitedUntil) return { reason: 'rate_limit', until: rateLimitedUntil };
  if (request.appliedAt !== null || request.applyError !== null) return null;
  if (request.applyClaimWaitUntil) return { reason: 'other_apply', until: request.applyClaimWaitUntil };
  return null;
}

/**
 * Builds the pages' line about an apply wait: the text before its time and the text after it.
 * Once the time has passed, the job only waits for a worker, and the line states that.
 */
export function describeApplyWait(wait: ApplyWait, now = new Date()): { before: string; after: string } {
  if (wait.reason === 'rate_limit') return describeWait('Applying', wait.until, now);
  if (wait.until.getTime() > now.getTime()) {
    return {
      before:
        'Applying waits for another apply of this preview that started first. Unless that ' +
        'apply succeeds, this one continues by itself as soon as it ends, and at the latest at',
      after: '.',
    };
  }
  return {
    before: 'Applying waited for another apply of this preview until',
    after: ', and continues as soon as a worker takes its job.',
  };
}
