import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { setTimeout as delay } from 'node:timers/promises';
import {
  checkPlatformKey,
  clearPlatformKeyRejection,
  configuredPlatformKeyId,
  endPlatformKeyRecheck,
  platformKeyRejectedReason,
  readPlatformKeyRecheck,
  recordPlatformKeyRejection,
} from '../keys/platform-key-rejections.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { ProviderError } from '../llm/errors.ts';
import { maxGenerateDurationMs } from '../llm/retry.ts';
import type { ModelClient } from '../llm/types.ts';
import type { Logger } from '../logger.ts';
import { platformKeySettingNames } from './provider-client.ts';

/**
 * A call on a platform key that the provider rejected, at this call or at an earlier one, in
 * which case the call sent no request.
 */
export class PlatformKeyRejectedError extends ProviderError {
  override name = 'PlatformKeyRejectedError';

  constructor(options: { provider: ModelClient['provider']; status: number | null | undefined }) {
    super({
      provider: options.provider,
      kind: 'unauthorized',
      message: platformKeyRejectedReason(options.provider, options.status),
      ...(options.status == null ? {} : { status: options.status }),
    });
  }
}

/** Milliseconds between reads of a re-check that another process runs. */
const recheckPollMs = 250;

/**
 * Verdict of a re-check on a platform key: `accepted` or `rejected` by the provider, or `none`
 * when the re-check ended without one, such as after a timeout or an outage.
 */
type RecheckVerdict = 'accepted' | 'rejected' | 'none';

/**
 * Verdicts of the re-checks that this process runs, by provider and key hash. Files that find
 * the key rejected while its re-check runs share the promise instead of reading the table.
 */
const runningRechecks = new Map<string, Promise<RecheckVerdict>>();

/** Returns `promise`'s value, or `fallback` when it has not settled within `ms`. */
async function settleWithin<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([promise, delay(ms, fallback, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}

/**
 * Wraps the client of a platform key so that a key the provider rejected gets no requests from
 * any preview while the same key is configured, apart from a periodic re-check. A rejection is
 * stored in `platform_key_rejections` by the key's hash, shared by all processes. A call on a
 * key recorded as rejected raises PlatformKeyRejectedError without a request. Once every
 * PLATFORM_KEY_RECHECK_SECONDS, one call across all processes tries the key again. When the
 * provider accepts it, the rejection is deleted. Calls that find the re-check running wait for
 * its verdict, for at most LLM_TIMEOUT_MS, and use the key when it passed or skip it when it
 * was rejected again. A new key value has another hash, so it is used at once.
 *
 * A re-check that ends without a verdict, after a timeout, an outage, a rate limit or an
 * allowance that cannot pay, shows nothing about the key. So each waiting call then sends its
 * own request, whose response decides for that file as it does for the re-check's own file: an
 * outage passes the file to the next provider, a rejection is recorded again, and an accepted
 * request deletes the rejection. The same holds for a call whose wait ends while the re-check
 * still runs. A re-check's first request returns the key's verdict within LLM_TIMEOUT_MS, so a
 * re-check still running after that is retrying after an outage or rate limit. Ending the wait
 * there keeps a waiting file from holding its place among the preview's concurrent files for
 * all the retries of another file's call.
 *
 * Wrap the metered client, so a skipped call reserves nothing. The warnings
 * `platform_key.rejected` and `platform_key.recovered` are logged once per change of the
 * recorded state, with the provider and the setting, never with the key.
 */
export function guardPlatformKey(
  client: ModelClient,
  context: { db: Database; config: Config; logger: Logger },
): ModelClient {
  const { db, config, logger } = context;
  const { provider } = client;
  const key = configuredPlatformKeyId(config, provider);
  if (!key) return client;
  const recheckSeconds = config.PLATFORM_KEY_RECHECK_SECONDS;
  // A claim older than one whole call with its retries belongs to a process that stopped.
  const recheckClaimMs = maxGenerateDurationMs({
    maxRetries: config.LLM_MAX_RETRIES,
    timeoutMs: config.LLM_TIMEOUT_MS,
  });
  const recheckWaitMs = config.LLM_TIMEOUT_MS;
  const recheckId = `${key.provider}:${key.keyHash}`;
  const fields = { provider, setting: platformKeySettingNames[provider] };

  /**
   * Runs a write to the rejection table and returns its result, or undefined after logging the
   * error. The provider's response decides the file's outcome, so a failed write does not.
   */
  const writeState = async (write: () => Promise<boolean>, failure: string): Promise<boolean | undefined> => {
    try {
      return await write();
    } catch (error) {
      logger.error({ event: 'platform_key.record_failed', ...fields, err: toSafeError(error) }, failure);
      return undefined;
    }
  };

  /** Records a rejection and logs a change of state. */
  const noteRejection = async (error: ProviderError, recheck: boolean): Promise<void> => {
    // When the write fails, the next call tries the key again.
    const changed = await writeState(
      () => recordPlatformKeyRejection(db, key, error.status, recheckSeconds),
      'could not record the rejection of the platform key',
    );
    if (changed === true) {
      logger.warn(
        { event: 'platform_key.rejected', ...fields, status: error.status, recheckSeconds },
        'provider rejected the platform key; previews skip it until a re-check passes or the setting changes',
      );
    } else if (changed === false && recheck) {
      logger.info(
        { event: 'platform_key.still_rejected', ...fields, status: error.status, recheckSeconds },
        'provider rejected the platform key again at its re-check',
      );
    }
  };

  /** Deletes the rejection after the provider accepted a call on the key, and logs the change. */
  const noteRecovery = async (): Promise<void> => {
    // When the write fails, previews skip the key until the next re-check.
    const changed = await writeState(
      () => clearPlatformKeyRejection(db, key),
      'could not delete the rejection of the platform key after it passed its re-check',
    );
    if (changed === true) {
      logger.warn(
        { event: 'platform_key.recovered', ...fields },
        'provider accepted the platform key again; previews use it again',
      );
    }
  };

  /**
   * Waits for the verdict of a running re-check, for at most recheckWaitMs. Returns `rejected`
   * at once when no re-check is running, and `none` when the re-check ended without a verdict
   * or the wait ended first.
   */
  const waitForRecheck = async (): Promise<RecheckVerdict> => {
    const local = runningRechecks.get(recheckId);
    if (local) return settleWithin(local, recheckWaitMs, 'none');

    // Another process may run the re-check, or this process claimed it but has not yet
    // registered its promise, so the call reads the row.
    const deadline = Date.now() + recheckWaitMs;
    let runningClaim: string | null = null;
    for (;;) {
      let read;
      try {
        read = await readPlatformKeyRecheck(db, key, recheckClaimMs);
      } catch (error) {
        logger.error(
          { event: 'platform_key.read_failed', ...fields, err: toSafeError(error) },
          'could not read the re-check of the platform key; the file skips the key',
        );
        return 'rejected';
      }
      if (read.state === 'usable') return 'accepted';
      if (read.state === 'idle') return read.claim === runningClaim ? 'none' : 'rejected';
      runningClaim = read.claim;
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) return 'none';
      await delay(Math.min(recheckPollMs, remainingMs));
    }
  };

  /** Sends a call on the key and records a rejection. `recheck` is true for the re-check's call. */
  const callKey = async (
    request: Parameters<ModelClient['generate']>[0],
    options: Parameters<ModelClient['generate']>[1],
    recheck: boolean,
  ): ReturnType<ModelClient['generate']> => {
    try {
      return await client.generate(request, options);
    } catch (error) {
      if (!(error instanceof ProviderError) || error.kind !== 'unauthorized') throw error;
      await noteRejection(error, recheck);
      throw new PlatformKeyRejectedError({ provider, status: error.status });
    }
  };

  /**
   * Sends a call that tries a rejected key, the re-check's or one after a re-check without a
   * verdict, and deletes the rejection when the provider accepts the key. The request is sent
   * after the rejection was read, so its success shows that the provider accepts the key now.
   */
  const tryRejectedKey = async (
    request: Parameters<ModelClient['generate']>[0],
    options: Parameters<ModelClient['generate']>[1],
    recheck: boolean,
  ): ReturnType<ModelClient['generate']> => {
    const result = await callKey(request, options, recheck);
    await noteRecovery();
    return result;
  };

  /** Sends the call that claimed the due re-check and shares its verdict with waiting calls. */
  const recheck: ModelClient['generate'] = async (request, options) => {
    let settle!: (verdict: RecheckVerdict) => void;
    const verdict = new Promise<RecheckVerdict>((resolve) => (settle = resolve));
    runningRechecks.set(recheckId, verdict);
    try {
      const result = await tryRejectedKey(request, options, true);
      settle('accepted');
      return result;
    } catch (error) {
      if (error instanceof PlatformKeyRejectedError) {
        settle('rejected');
        throw error;
      }
      // Any other error, such as a timeout, an outage or an allowance that cannot pay, gives no
      // verdict on the key, so the waiting calls send their own requests.
      await writeState(async () => {
        await endPlatformKeyRecheck(db, key);
        return true;
      }, 'could not end the re-check of the platform key');
      settle('none');
      throw error;
    } finally {
      if (runningRechecks.get(recheckId) === verdict) runningRechecks.delete(recheckId);
    }
  };

  return {
    provider,
    model: client.model,
    listModels: () => client.listModels(),
    async generate(request, options) {
      const before = await checkPlatformKey(db, key, recheckSeconds);
      if (before.state === 'usable') return callKey(request, options, false);
      if (before.state === 'recheck') return recheck(request, options);
      const verdict = await waitForRecheck();
      if (verdict === 'accepted') return callKey(request, options, false);
      if (verdict === 'rejected') throw new PlatformKeyRejectedError({ provider, status: before.status });
      return tryRejectedKey(request, options, false);
    },
  };
}
