import type { MiddlewareHandler } from 'hono';
import { AppError } from './errors.ts';

/** Seconds in the Retry-After header of the 503 that `limitConcurrency` and the webhook route return. */
export const retryAfterSeconds = 1;

/** Why `limitConcurrency` rejected a request: the waiting queue was full, or the wait ran out. */
export type ConcurrencyRejection = 'queue_full' | 'wait_timed_out';

export interface ConcurrencyLimits {
  /** Requests let through to the next handlers at once. */
  maxConcurrent: number;
  /** Requests that may wait for a slot at once; 0 rejects every request beyond `maxConcurrent`. */
  maxWaiting: number;
  /** Milliseconds a request waits for a slot before it is rejected. */
  maxWaitMs: number;
  /** Message of the 503 for each reason of a rejection. */
  message: (reason: ConcurrencyRejection) => string;
}

interface Waiter {
  grant: () => void;
}

/**
 * Lets at most `maxConcurrent` requests at a time through to the next handlers. A request
 * beyond that waits in first-in, first-out order for a slot, for at most `maxWaitMs`. It gets a
 * 503 with Retry-After when the wait runs out, or at once when `maxWaiting` requests are already
 * waiting.
 */
export function limitConcurrency(limits: ConcurrencyLimits): MiddlewareHandler {
  let inFlight = 0;
  const waiting: Waiter[] = [];

  const reject = (reason: ConcurrencyRejection): AppError =>
    new AppError('service_unavailable', limits.message(reason));

  // A finished request hands its slot straight to the first waiter, so `inFlight` stays the same
  // and a request that arrives meanwhile cannot take the slot ahead of the queue.
  const releaseSlot = () => {
    const next = waiting.shift();
    if (next) next.grant();
    else inFlight -= 1;
  };

  const waitForSlot = (): Promise<boolean> =>
    new Promise((resolve) => {
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(waiter), 1);
        resolve(false);
      }, limits.maxWaitMs);
      waiting.push(waiter);
    });

  return async (c, next) => {
    if (inFlight < limits.maxConcurrent) {
      inFlight += 1;
    } else if (waiting.length >= limits.maxWaiting) {
      c.header('Retry-After', String(retryAfterSeconds));
      throw reject('queue_full');
    } else if (!(await waitForSlot())) {
      c.header('Retry-After', String(retryAfterSeconds));
      throw reject('wait_timed_out');
    }
    try {
      await next();
    } finally {
      releaseSlot();
    }
  };
}
