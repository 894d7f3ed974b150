import type { Database } from '../db/client.ts';
import type { Provider } from '../db/schema/index.ts';
import type { Keyring } from '../keys/master-keys.ts';
import {
  deletedKeyReason,
  findStoredKey,
  markKeyUnusable,
  markKeyUsed,
  openStoredKey,
  rejectedReason,
  type StoredKeyRef,
} from '../keys/own-keys.ts';
import { ProviderError, redactSecrets } from '../llm/errors.ts';
import type { BilledRetry, ModelClient } from '../llm/types.ts';
import type { Logger } from '../logger.ts';

/**
 * Raised in place of a call when the user's stored key changed after the client read it so
 * that it cannot be used. The key was `deleted`, or an earlier call marked it `rejected`, or a
 * key that does not decrypt here replaced it (`unusable`). Its kind is `unauthorized`, so a
 * preview passes the request on only to a client that uses another own key of the user.
 */
export class StoredKeyChangedError extends ProviderError {
  override name = 'StoredKeyChangedError';

  constructor(
    provider: Provider,
    readonly change: 'deleted' | 'rejected' | 'unusable',
    message: string,
  ) {
    super({ provider, kind: 'unauthorized', message });
  }
}

/** A stored key as one call uses it: its row's identity, the plain key and its client. */
interface CurrentKey {
  stored: StoredKeyRef;
  apiKey: string;
  client: ModelClient;
}

/**
 * Wraps calls on the user's own key `own`. Each call reads the stored key first, one query on
 * the (user, provider) unique index, and calls with the key as stored at that moment. A key
 * deleted since raises StoredKeyChangedError without a call. A key saved again, or
 * re-encrypted by `keys rotate`, has a new nonce, so it is decrypted again and a client for it
 * is made with `createClient`.
 * A call that read the key before a delete or a save committed still runs with the key it
 * read, its retries included.
 *
 * Accepted calls update the key's last_used_at, and so does a billed response that the client
 * retried, even when a later request fails. A rejected key (`unauthorized`) is marked unusable,
 * and the raised error directs the user to the keys page. A preview passes the request on after
 * that error only to a client that uses another own key of the user, never to a platform key
 * (see generateOwnKeysLast in key-fallback.ts).
 */
export function ownKeyClient(
  context: { db: Database; keyring: Keyring; logger: Logger },
  own: { key: string; stored: StoredKeyRef },
  createClient: (apiKey: string) => ModelClient,
  options: { platformKeyConfigured: boolean },
): ModelClient {
  const { db, logger } = context;
  const { userId, provider } = own.stored;
  let latest: CurrentKey = { stored: own.stored, apiKey: own.key, client: createClient(own.key) };

  const readCurrentKey = async (): Promise<CurrentKey> => {
    const row = await findStoredKey(db, own.stored);
    if (!row) {
      logger.info(
        { event: 'user_key.deleted_during_preview', userId, provider },
        'stored key was deleted after the preview read it; the call was not made',
      );
      throw new StoredKeyChangedError(provider, 'deleted', deletedKeyReason(provider));
    }
    // A key that an earlier call got rejected is passed over without being sent again.
    if (row.unusableCause === 'rejected') {
      throw new StoredKeyChangedError(provider, 'rejected', row.unusableReason ?? rejectedReason(provider, undefined));
    }
    if (row.nonce === latest.stored.nonce) return latest;

    const opened = await openStoredKey(context, row);
    if (!opened.usable) throw new StoredKeyChangedError(provider, 'unusable', opened.reason);
    latest = { stored: opened.stored, apiKey: opened.key, client: createClient(opened.key) };
    logger.info(
      { event: 'user_key.reloaded', userId, provider },
      'stored key changed after the preview read it; calling with the key as stored now',
    );
    return latest;
  };

  return {
    provider: latest.client.provider,
    model: latest.client.model,
    listModels: () => latest.client.listModels(),
    async generate(request, callOptions) {
      const { stored, apiKey, client } = await readCurrentKey();
      let result;
      const onBilledRetry = async (retry: BilledRetry): Promise<void> => {
        await markKeyUsed(db, stored);
        await callOptions?.onBilledRetry?.(retry);
      };
      try {
        result = await client.generate(request, { ...callOptions, onBilledRetry });
      } catch (error) {
        if (!(error instanceof ProviderError)) throw error;
        // The clients redact their key already; this repeats it for text added on the way.
        error.message = redactSecrets(error.message, [apiKey]);
        // A provider that sent an HTTP response, even a rejection, received the key. "Last used"
        // records that, so a rejected key does not read as never sent.
        const responded = error.usage !== undefined || error.status !== undefined;
        if (error.kind !== 'unauthorized') {
          if (responded) await markKeyUsed(db, stored);
          throw error;
        }

        // NOTE: the stored reason keeps its text about the platform key until the key is
        // saved again, even when the operator adds or removes that platform key meanwhile.
        const reason = rejectedReason(stored.provider, error.status, options.platformKeyConfigured);
        await markKeyUnusable(db, stored, 'rejected', reason, { sent: responded });
        logger.warn(
          {
            event: 'user_key.rejected',
            userId: stored.userId,
            provider: stored.provider,
            status: error.status,
          },
          'provider rejected a stored key; marked unusable',
        );
        throw new ProviderError({
          provider: stored.provider,
          kind: 'unauthorized',
          message: reason,
          ...(error.status !== undefined ? { status: error.status } : {}),
        });
      }
      await markKeyUsed(db, stored);
      return result;
    },
  };
}
