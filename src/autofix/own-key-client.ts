import type { Database } from '../db/client.ts';
import { markKeyUnusable, markKeyUsed, rejectedReason, type StoredKeyRef } from '../keys/own-keys.ts';
import { ProviderError, redactSecrets } from '../llm/errors.ts';
import type { BilledRetry, ModelClient } from '../llm/types.ts';
import type { Logger } from '../logger.ts';

/**
 * Wraps a client that uses the user's own key. Accepted calls update the key's last_used_at,
 * and so does a billed response that the client retried, even when a later request fails.
 * A rejected key (`unauthorized`) is marked unusable, and the raised error directs the user to
 * the keys page. A preview passes the request on after that error only to a client that uses
 * another own key of the user, never to a platform key (see generateOwnKeysLast in key-fallback.ts).
 */
export function ownKeyClient(
  client: ModelClient,
  options: { db: Database; logger: Logger; stored: StoredKeyRef; apiKey: string },
): ModelClient {
  const { db, logger, stored, apiKey } = options;
  return {
    provider: client.provider,
    model: client.model,
    listModels: () => client.listModels(),
    async generate(request, callOptions) {
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
        if (error.usage) await markKeyUsed(db, stored);
        if (error.kind !== 'unauthorized') throw error;

        const reason = rejectedReason(stored.provider, error.status);
        await markKeyUnusable(db, stored, 'rejected', reason);
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
