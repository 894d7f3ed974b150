import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import {
  checkPlatformKey,
  clearPlatformKeyRejection,
  configuredPlatformKeyId,
  platformKeyRejectedReason,
  recordPlatformKeyRejection,
} from '../keys/platform-key-rejections.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { ProviderError } from '../llm/errors.ts';
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

/**
 * Wraps the client of a platform key so that a key the provider rejected gets no requests from
 * any preview while the same key is configured, apart from a periodic re-check. A rejection is
 * stored in `platform_key_rejections` by the key's hash, shared by all processes. A call on a
 * key recorded as rejected raises PlatformKeyRejectedError without a request. Once every
 * PLATFORM_KEY_RECHECK_SECONDS, one call tries the key again. When the provider accepts it, the
 * rejection is deleted. A new key value has another hash, so it is used at once.
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

  return {
    provider,
    model: client.model,
    listModels: () => client.listModels(),
    async generate(request, options) {
      const before = await checkPlatformKey(db, key, recheckSeconds);
      if (before.state === 'rejected') throw new PlatformKeyRejectedError({ provider, status: before.status });

      let result;
      try {
        result = await client.generate(request, options);
      } catch (error) {
        if (!(error instanceof ProviderError) || error.kind !== 'unauthorized') throw error;
        await noteRejection(error, before.state === 'recheck');
        throw new PlatformKeyRejectedError({ provider, status: error.status });
      }
      // Only the re-check clears a rejection, because a call sent before another process
      // recorded the rejection may still succeed with a key that the provider now rejects.
      if (before.state === 'recheck') await noteRecovery();
      return result;
    },
  };
}
