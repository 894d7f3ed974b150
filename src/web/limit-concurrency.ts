import type { MiddlewareHandler } from 'hono';
import { AppError } from './errors.ts';

/** Seconds in the Retry-After header of the 503 that `limitConcurrency` and the webhook route return. */
export const retryAfterSeconds = 1;

/**
 * Lets at most `max` requests at a time through to the next handlers. Any request beyond that
 * gets a 503 with Retry-After and `message` at once, without waiting for a request to finish.
 */
export function limitConcurrency(max: number, message: string): MiddlewareHandler {
  let inFlight = 0;
  return async (c, next) => {
    if (inFlight >= max) {
      c.header('Retry-After', String(retryAfterSeconds));
      throw new AppError('service_unavailable', message);
    }
    inFlight += 1;
    try {
      await next();
    } finally {
      inFlight -= 1;
    }
  };
}
