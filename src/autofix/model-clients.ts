import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import type { KeySource, Provider } from '../db/schema/index.ts';
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

/** A provider to call and the key that pays for it. */
export interface KeyChoice {
  provider: Provider;
  keySource: KeySource;
}

/**
 * Chooses the key of each provider in the user's order: the user's own key when one is stored
 * and usable, otherwise the platform key. A provider is left out when its stored key is
 * unusable, when it has no key, or when its only key is a platform key after an own key.
 */
export function chooseKeys(
  order: readonly Provider[],
  ownKeyUsable: ReadonlyMap<Provider, boolean>,
  hasPlatformKey: (provider: Provider) => boolean,
): KeyChoice[] {
  const choices: KeyChoice[] = [];
  for (const provider of order) {
    const usable = ownKeyUsable.get(provider);
    if (usable === true) {
      choices.push({ provider, keySource: 'user' });
      continue;
    }
    // A platform client after an own-key client would run only after a rate limit or outage on
    // the own key. The user chose to pay with that key, so their allowance is not spent then.
    if (usable === false || !hasPlatformKey(provider)) continue;
    if (choices.some((choice) => choice.keySource === 'user')) continue;
    choices.push({ provider, keySource: 'platform' });
  }
  return choices;
}

/**
 * Returns the clients to try for a user, in the user's provider order, as chooseKeys picks
 * them. A provider whose stored key is unusable is left out, never given the platform key.
 * The own keys are read here to choose the clients, and each own-key client reads its key
 * again at every call (see ownKeyClient).
 */
export async function resolveModelClients(
  context: { config: Config; db: Database; keyring: Keyring; logger: Logger },
  user: { id: string },
): Promise<ModelClientSelection> {
  const { config, db, logger } = context;
  const order = await getProviderOrder(db, user.id);
  const ownKeys = await loadOwnKeys(context, user.id);

  const unusableKeyReasons: string[] = [];
  for (const provider of order) {
    const own = ownKeys.get(provider);
    if (!own || own.usable) continue;
    unusableKeyReasons.push(own.reason);
    logger.info(
      { event: 'preview.provider_skipped', userId: user.id, provider },
      'stored key is unusable; provider left out',
    );
  }

  const usable = new Map([...ownKeys].map(([provider, own]) => [provider, own.usable]));
  const choices = chooseKeys(order, usable, (provider) => Boolean(platformKey(config, provider)));
  const clients: KeyedClient[] = choices.map(({ provider, keySource }) => {
    const own = ownKeys.get(provider);
    if (keySource === 'user' && own?.usable) {
      const createClient = (apiKey: string) => createProviderClient(config, provider, apiKey);
      const platformKeyConfigured = Boolean(platformKey(config, provider));
      return { keySource, client: ownKeyClient(context, own, createClient, { platformKeyConfigured }) };
    }
    return { keySource, client: createProviderClient(config, provider, platformKey(config, provider)!) };
  });
  return { clients, unusableKeyReasons };
}
