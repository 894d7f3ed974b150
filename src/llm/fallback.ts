import { ProviderError, type ProviderErrorKind } from './errors.ts';
import { providerNames } from './retry.ts';
import type { ModelClient, ModelRequest, ModelResult, ModelUsage, Provider } from './types.ts';

/** Outcome of one `generate` call on one client, retries inside the client included. */
export type ModelAttempt = {
  provider: Provider;
  model: string;
  /**
   * Tokens the provider reported for the call's last request: the result's usage, or the
   * error's usage when a rejected response (truncated, empty, blocked, unreadable) still cost
   * tokens. Undefined when the provider reported none, as for 429, 5xx, timeouts and connection
   * errors. Billed requests that the client retried go to the client's `onBilledRetry` instead.
   */
  usage: ModelUsage | undefined;
  /** Set when the call succeeded. */
  result?: ModelResult;
  /** Set when the call failed. */
  error?: ProviderError;
};

export type FallbackOptions = {
  signal?: AbortSignal;
  /**
   * Called once per client call, after it succeeded or failed and before the next client is
   * tried, so it receives the usage of each call's last request exactly once. A caller that
   * charges here should not charge the returned result or the thrown error as well, because
   * nothing here prevents that. A rejection from this callback is raised to the caller.
   *
   * NOTE: a call that timed out or was aborted may have cost tokens that the provider never
   * reported, so its `usage` is undefined.
   */
  onAttempt?: (attempt: ModelAttempt) => void | Promise<void>;
  /**
   * Returns whether the client after `clients[index]` gets the request when the provider
   * rejected the key of `clients[index]` (`unauthorized`). Without it, a rejected key raises its
   * error at once.
   */
  passRejectedKey?: (index: number) => boolean;
};

/** Error kinds after which the next client is tried, because another provider may succeed. */
const fallbackKinds: ReadonlySet<ProviderErrorKind> = new Set([
  'rate_limited',
  'unavailable',
  'timeout',
]);

/**
 * Sends the request to each client in order until one succeeds, and returns its result.
 *
 * The next client is tried after `rate_limited`, `unavailable` and `timeout`, and after
 * `unauthorized` only when `options.passRejectedKey` allows it for the failed client. Other
 * errors are raised at once: `truncated`, `empty`, `blocked` and `invalid_request` concern the
 * content, which another provider would see too, and `unauthorized` must not switch to another
 * key that the caller did not allow. An abort through `options.signal` also stops the loop.
 *
 * When every client fails, raises a ProviderError with the last error's fields and a message
 * that names each provider's failure.
 */
export async function generateWithFallback(
  clients: ModelClient[],
  request: ModelRequest,
  options: FallbackOptions = {},
): Promise<ModelResult> {
  if (clients.length === 0) {
    throw new Error('No model provider is configured. Set a Groq or Gemini API key.');
  }

  const failures: ProviderError[] = [];
  for (const [index, client] of clients.entries()) {
    let result: ModelResult;
    try {
      result = await client.generate(request, options.signal ? { signal: options.signal } : {});
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      await options.onAttempt?.({
        provider: client.provider,
        model: client.model,
        usage: error.usage,
        error,
      });

      const next =
        fallbackKinds.has(error.kind) ||
        (error.kind === 'unauthorized' && index < clients.length - 1 && options.passRejectedKey?.(index) === true);
      if (!next || options.signal?.aborted) throw error;
      failures.push(error);
      continue;
    }

    await options.onAttempt?.({
      provider: client.provider,
      model: client.model,
      usage: result.usage,
      result,
    });
    return result;
  }

  throw combineFailures(failures);
}

/** Builds the error raised when every client failed. */
function combineFailures(failures: ProviderError[]): ProviderError {
  const last = failures.at(-1);
  if (last === undefined) throw new Error('combineFailures needs at least one failure');
  if (failures.length === 1) return last;

  const summary = failures
    .map((failure) => `${providerNames[failure.provider]} (${failure.kind}): ${failure.message}`)
    .join(' ');
  return new ProviderError({
    provider: last.provider,
    kind: last.kind,
    message: `Every model provider failed. ${summary}`,
    ...(last.status !== undefined ? { status: last.status } : {}),
    ...(last.retryAfterSeconds !== undefined ? { retryAfterSeconds: last.retryAfterSeconds } : {}),
    ...(last.usage !== undefined ? { usage: last.usage } : {}),
  });
}
