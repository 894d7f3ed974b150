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
 * Outcomes of the re-checks that this process runs, by provider and key hash: true when the
 * provider accepted the key. Files that find the key rejected while its re-check runs share
 * the promise instead of reading the table.
 */
const runningRechecks = new Map<string, Promise<boolean>>();

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
 * its outcome, up to the longest time one call can take with its retries, and use the key when
 * it passed. A new key value has another hash, so it is used at once.
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
  const recheckWaitMs = maxGenerateDurationMs({
    maxRetries: config.LLM_MAX_RETRIES,
    timeoutMs: config.LLM_TIMEOUT_MS,
  });
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

  /** Deletes the rejection after a passed re-check and logs the change. */
  const noteRecovery = async (): Promise<void> => {
    // When the write fails, previews skip the key until the next re-check.
    const changed = await writeState(
      () => clearPlatformKeyRejection(db, key),
      'could not delete the rejection of the platform key after it passed its re-check',
    );
    if (changed === true) {
      logger.warn(
        { event: 'platform_key.recovered', ...fields },
        'provider accepted the platform key again at its re-check; previews use it again',
      );
    }
  };

  /**
   * Waits for the outcome of a running re-check and returns true when the provider accepted the
   * key. Returns false at once when no re-check is running, and after recheckWaitMs at most.
   */
  const waitForRecheck = async (): Promise<boolean> => {
    const local = runningRechecks.get(recheckId);
    if (local) return settleWithin(local, recheckWaitMs, false);

    // Another process may run the re-check, or this process claimed it but has not yet
    // registered its promise, so the call reads the row.
    const deadline = Date.now() + recheckWaitMs;
    for (;;) {
      let state;
      try {
        state = await readPlatformKeyRecheck(db, key, recheckWaitMs);
      } catch (error) {
        logger.error(
          { event: 'platform_key.read_failed', ...fields, err: toSafeError(error) },
          'could not read the re-check of the platform key; the file skips the key',
        );
        return false;
      }
      if (state !== 'running') return state === 'usable';
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) return false;
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

  /** Sends the call that claimed the due re-check and shares its outcome with waiting calls. */
  const recheck: ModelClient['generate'] = async (request, options) => {
    let passed!: (value: boolean) => void;
    const outcome = new Promise<boolean>((resolve) => (passed = resolve));
    runningRechecks.set(recheckId, outcome);
    try {
      let result;
      try {
        result = await callKey(request, options, true);
      } catch (error) {
        if (error instanceof PlatformKeyRejectedError) throw error;
        // NOTE: an error that gives no verdict on the key, such as a timeout, ends the re-check
        // without an outcome, so the waiting calls fail and the key waits for its next re-check.
        await writeState(async () => {
          await endPlatformKeyRecheck(db, key);
          return true;
        }, 'could not end the re-check of the platform key');
        throw error;
      }
      // Only the re-check clears a rejection, because a call sent before another process
      // recorded the rejection may still succeed with a key that the provider now rejects.
      await noteRecovery();
      passed(true);
      return result;
    } finally {
      passed(false);
      if (runningRechecks.get(recheckId) === outcome) runningRechecks.delete(recheckId);
    }
  };

  return {
    provider,
    model: client.model,
    listModels: () => client.listModels(),
    async generate(request, options) {
      const before = await checkPlatformKey(db, key, recheckSeconds);
      if (before.state === 'recheck') return recheck(request, options);
      if (before.state === 'rejected' && !(await waitForRecheck())) {
        throw new PlatformKeyRejectedError({ provider, status: before.status });
      }
      return callKey(request, options, false);
    },
  };
}
