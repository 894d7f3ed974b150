import { isDatabaseUnreachable } from './connection-errors.ts';

/** Delays before the first retries of a statement whose database was unreachable, in milliseconds. */
const retryDelaysMs = [1_000, 2_000, 4_000];

/** Delay before every later retry, in milliseconds: the job queue's reconnect probe interval. */
const laterRetryDelayMs = 5_000;

export interface UnreachableRetryOptions {
  /** Time in milliseconds since the epoch after which no retry starts. Default: no limit. */
  retryUntil?: number;
  /** Ends the retries at once when it aborts, and the last error is thrown. */
  signal?: AbortSignal;
  /** Called after each failure that is retried, with the error and the retry's number, from 1. */
  onRetry?: (error: unknown, retry: number) => void;
}

/**
 * Runs `operation` and runs it again while it fails because the database cannot be reached,
 * after 1 s, 2 s and 4 s, then every 5 s. Throws any other error at once, and throws the last
 * connection error when `signal` aborts or the next retry would start after `retryUntil`.
 * The operation must be safe to repeat, because a statement whose connection was cut may have
 * committed.
 */
export async function retryWhileUnreachable<T>(
  operation: () => Promise<T>,
  options: UnreachableRetryOptions = {},
): Promise<T> {
  for (let retry = 1; ; retry++) {
    try {
      return await operation();
    } catch (error) {
      if (!isDatabaseUnreachable(error) || options.signal?.aborted) throw error;
      const delayMs = retryDelaysMs[retry - 1] ?? laterRetryDelayMs;
      if (options.retryUntil !== undefined && Date.now() + delayMs > options.retryUntil) throw error;
      options.onRetry?.(error, retry);
      if (!(await waitUnlessAborted(delayMs, options.signal))) throw error;
    }
  }
}

/** Waits `ms` milliseconds. Returns false at once when `signal` aborts first. */
function waitUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(false);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
