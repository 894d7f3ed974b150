import type { Logger } from '../logger.ts';
import { formatRetryDelay } from '../text/retry-delay.ts';
import { ProviderError } from './errors.ts';
import { providerNames, type BilledRetry, type Provider } from './types.ts';

/** Retry settings shared by the provider clients. */
export type RetryPolicy = {
  /** Maximum number of retries after the first request, for 429, 5xx and connection errors. */
  maxRetries: number;
  /**
   * Maximum delay in seconds that a 429 (or 5xx) response may request and still be retried.
   * A longer delay raises the error at once (`rate_limited` for 429), so the caller can use
   * another provider.
   */
  maxRetryAfterSeconds: number;
  /** Delay in ms before the first retry when the provider sent no delay. It doubles per retry. */
  baseDelayMs: number;
  /** Upper bound in ms for the doubling delay. */
  maxDelayMs: number;
};

export const defaultRetryPolicy: Omit<RetryPolicy, 'maxRetries'> = {
  maxRetryAfterSeconds: 10,
  baseDelayMs: 500,
  maxDelayMs: 8000,
};

export { providerNames } from './types.ts';

/**
 * Returns the longest time in ms that one client's `generate` can take under `policy`. In that
 * case every request runs until `timeoutMs`, and each retry first waits the longest delay that
 * the policy allows: a retry-after up to `maxRetryAfterSeconds`, or the capped back-off.
 */
export function maxGenerateDurationMs(
  limits: { maxRetries: number; timeoutMs: number },
  policy: Omit<RetryPolicy, 'maxRetries'> = defaultRetryPolicy,
): number {
  const maxRetryDelayMs = Math.max(policy.maxRetryAfterSeconds * 1000, policy.maxDelayMs);
  return (limits.maxRetries + 1) * limits.timeoutMs + limits.maxRetries * maxRetryDelayMs;
}

/**
 * Returns the delay in ms before the next retry, or undefined when the error must be raised.
 * `retriesDone` counts the retries already made for this call.
 */
export function computeRetryDelayMs(
  error: ProviderError,
  retriesDone: number,
  policy: RetryPolicy,
): number | undefined {
  if (retriesDone >= policy.maxRetries) return undefined;
  if (error.kind !== 'rate_limited' && error.kind !== 'unavailable') return undefined;

  if (error.retryAfterSeconds !== undefined) {
    if (error.retryAfterSeconds > policy.maxRetryAfterSeconds) return undefined;
    return Math.max(0, error.retryAfterSeconds * 1000);
  }
  return Math.min(policy.baseDelayMs * 2 ** retriesDone, policy.maxDelayMs);
}

/**
 * Parses a `retry-after` header, either a number of seconds or an HTTP date, into seconds.
 * Returns undefined for a missing or unreadable value.
 */
export function parseRetryAfterHeader(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;

  const seconds = Number(value.trim());
  if (Number.isFinite(seconds)) return Math.max(0, seconds);

  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** Builds the "Retry after ..." sentence for a provider's delay in seconds (see formatRetryDelay). */
export function describeRetryAfter(seconds: number): string {
  return `Retry after ${formatRetryDelay(seconds)}.`;
}

/** Waits `ms` milliseconds. Rejects with the signal's reason when the signal aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Abort signal for one HTTP request. It aborts when `timeoutMs` passes or the caller's signal
 * aborts. `dispose` clears the timer and the listener, so no handle outlives the request.
 */
export type AttemptSignal = {
  signal: AbortSignal;
  timedOut(): boolean;
  callerAborted(): boolean;
  dispose(): void;
};

/** Starts the signal for one HTTP request. Call `dispose` when the request has settled. */
export function startAttemptSignal(timeoutMs: number, callerSignal?: AbortSignal): AttemptSignal {
  const controller = new AbortController();
  let timedOut = false;

  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new DOMException(`Timed out after ${timeoutMs} ms`, 'TimeoutError'));
  }, timeoutMs);
  const onCallerAbort = () => controller.abort(callerSignal?.reason);

  if (callerSignal?.aborted) {
    onCallerAbort();
  } else {
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
  }

  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    callerAborted: () => !timedOut && callerSignal?.aborted === true,
    dispose: () => {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    },
  };
}

export function timeoutError(provider: Provider, timeoutMs: number): ProviderError {
  return new ProviderError({
    provider,
    kind: 'timeout',
    message:
      `${providerNames[provider]} did not respond within ${timeoutMs} ms. ` +
      'Try again later or raise the timeout.',
  });
}

export function callerAbortError(provider: Provider): ProviderError {
  return new ProviderError({
    provider,
    kind: 'timeout',
    message:
      `The request to ${providerNames[provider]} was cancelled ` +
      'because the caller aborted it.',
  });
}

/**
 * Runs `attempt` and retries it per `policy` after `rate_limited` and `unavailable` errors.
 * Before retrying after an error that carries usage, it awaits `onBilledRetry`, whose
 * rejection is raised. Raises the last error when no retry is left or the delay exceeds the
 * policy's cap, and raises a `timeout` error when the caller's signal aborts during a wait.
 */
export async function runWithRetries<T>(
  context: { provider: Provider; model: string; policy: RetryPolicy; logger?: Logger },
  attempt: () => Promise<T>,
  signal?: AbortSignal,
  onBilledRetry?: (retry: BilledRetry) => Promise<void>,
): Promise<T> {
  const { provider, model, policy, logger } = context;

  for (let retriesDone = 0; ; retriesDone++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      const delayMs = computeRetryDelayMs(error, retriesDone, policy);
      if (delayMs === undefined) throw error;
      if (error.usage && onBilledRetry) {
        await onBilledRetry({ usage: error.usage, request: retriesDone + 1 });
      }

      const retry = retriesDone + 1;
      logger?.warn(
        { provider, model, kind: error.kind, status: error.status, retry, delayMs },
        `Retrying the ${providerNames[provider]} request after an error: ${error.message}`,
      );
      try {
        await sleep(delayMs, signal);
      } catch {
        throw callerAbortError(provider);
      }
    }
  }
}
