import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import type { KeySource } from '../db/schema/index.ts';
import type { Keyring } from '../keys/master-keys.ts';
import { loadOwnKeys } from '../keys/own-keys.ts';
import { getProviderOrder } from '../keys/user-keys.ts';
import type { ModelClient } from '../llm/types.ts';
import type { Logger } from '../logger.ts';
import { ownKeyClient } from './own-key-client.ts';
import { createProviderClient, platformKey } from './provider-client.ts';

export interface KeyedClient {
  client: ModelClient;
  keySource: KeySource;
}

export interface ModelClientSelection {
  /** Clients to try in order; platform clients always come before own-key clients. */
  clients: KeyedClient[];
  /** Messages with what to do, one per provider left out because its stored key is unusable. */
  unusableKeyReasons: string[];
}

/**
 * Returns the clients to try for a user, in the user's provider order. A provider uses the
 * user's own key when one is stored, otherwise the platform key, and is left out when it has
 * neither. A provider whose stored key is unusable is left out too, never given the platform key.
 */
export async function resolveModelClients(
  context: { config: Config; db: Database; keyring: Keyring; logger: Logger },
  user: { id: string },
): Promise<ModelClientSelection> {
  const { config, db, logger } = context;
  const order = await getProviderOrder(db, user.id);
  const ownKeys = await loadOwnKeys(context, user.id);

  const clients: KeyedClient[] = [];
  const unusableKeyReasons: string[] = [];
  for (const provider of order) {
    const own = ownKeys.get(provider);
    if (own?.usable) {
      const client = createProviderClient(config, provider, own.key);
      clients.push({
        keySource: 'user',
        client: ownKeyClient(client, { db, logger, stored: own.stored, apiKey: own.key }),
      });
      continue;
    }
    if (own) {
      unusableKeyReasons.push(own.reason);
      logger.info(
        { event: 'preview.provider_skipped', userId: user.id, provider },
        'stored key is unusable; provider left out',
      );
      continue;
    }
    const key = platformKey(config, provider);
    // A platform client after an own-key client would run only after a rate limit or outage on
    // the own key. The user chose to pay with that key, so their allowance is not spent then.
    if (!key || clients.some((entry) => entry.keySource === 'user')) continue;
    clients.push({ keySource: 'platform', client: createProviderClient(config, provider, key) });
  }
  return { clients, unusableKeyReasons };
}
