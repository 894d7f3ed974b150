import { and, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { userApiKeys, type Provider, type UnusableCause } from '../db/schema/index.ts';
import { providerNames } from '../llm/retry.ts';
import type { Logger } from '../logger.ts';
import { decryptUserKey, KeyDecryptionError } from './encryption.ts';
import type { Keyring } from './master-keys.ts';

/** A stored key ready for a model call, or the reason it cannot be used. */
export type OwnKey =
  | { provider: Provider; usable: true; key: string; stored: StoredKeyRef }
  | { provider: Provider; usable: false; reason: string };

/** Identifies one saved version of a key, so a mark never hits a key saved again since. */
export interface StoredKeyRef {
  userId: string;
  provider: Provider;
  nonce: string;
}

/** Builds the message stored and shown when a key does not decrypt. */
export function undecryptableReason(provider: Provider): string {
  const name = providerNames[provider];
  return (
    `Your saved ${name} key could not be decrypted; the master key may have changed. ` +
    `Save the ${name} key again on the keys page.`
  );
}

/** Builds the message stored and shown when the provider rejected a saved key in a preview. */
export function rejectedReason(provider: Provider, status: number | undefined): string {
  const name = providerNames[provider];
  const answer = status !== undefined ? ` (HTTP ${status})` : '';
  return (
    `${name} rejected your saved ${name} key${answer}, so the platform key was not used ` +
    `instead. Update your ${name} key on the keys page.`
  );
}

/**
 * Decrypts the user's stored keys for one job. A key the provider rejected stays unusable
 * until it is saved again. A key that does not decrypt is marked unusable and left out, and
 * a key marked so earlier that decrypts again (its master key is back) is used and unmarked.
 */
export async function loadOwnKeys(
  context: { db: Database; keyring: Keyring; logger: Logger },
  userId: string,
): Promise<Map<Provider, OwnKey>> {
  const { db, keyring, logger } = context;
  const rows = await db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));
  const keys = new Map<Provider, OwnKey>();
  for (const row of rows) {
    const { provider } = row;
    if (row.unusableCause === 'rejected') {
      keys.set(provider, { provider, usable: false, reason: row.unusableReason ?? rejectedReason(provider, undefined) });
      continue;
    }
    const stored = { userId, provider, nonce: row.nonce };
    try {
      const key = await decryptUserKey(keyring, { userId, provider }, row);
      if (row.unusableCause === 'undecryptable') {
        await clearUnusable(db, stored);
        logger.info({ event: 'user_key.decryptable_again', userId, provider }, 'stored key decrypts again');
      }
      keys.set(provider, { provider, usable: true, key, stored });
    } catch (error) {
      if (!(error instanceof KeyDecryptionError)) throw error;
      const reason = undecryptableReason(provider);
      if (row.unusableCause !== 'undecryptable') {
        await markKeyUnusable(db, stored, 'undecryptable', reason);
      }
      logger.warn(
        {
          event: 'user_key.undecryptable',
          userId,
          provider,
          masterKeyVersion: row.masterKeyVersion,
          cause: error.reason,
          detail: error.message,
        },
        'stored key could not be decrypted',
      );
      keys.set(provider, { provider, usable: false, reason });
    }
  }
  return keys;
}

// The updates below keep updated_at, which records when the user last saved the key.

/** Marks the saved key unusable, unless it was replaced since it was loaded. */
export async function markKeyUnusable(
  db: Database,
  stored: StoredKeyRef,
  cause: UnusableCause,
  reason: string,
): Promise<void> {
  await db
    .update(userApiKeys)
    .set({ unusableCause: cause, unusableReason: reason, updatedAt: sql`${userApiKeys.updatedAt}` })
    .where(matches(stored));
}

/** Records that the provider accepted a call made with the saved key. */
export async function markKeyUsed(db: Database, stored: StoredKeyRef): Promise<void> {
  await db
    .update(userApiKeys)
    .set({ lastUsedAt: sql`now()`, updatedAt: sql`${userApiKeys.updatedAt}` })
    .where(matches(stored));
}

async function clearUnusable(db: Database, stored: StoredKeyRef): Promise<void> {
  await db
    .update(userApiKeys)
    .set({ unusableCause: null, unusableReason: null, updatedAt: sql`${userApiKeys.updatedAt}` })
    .where(matches(stored));
}

function matches(stored: StoredKeyRef) {
  return and(
    eq(userApiKeys.userId, stored.userId),
    eq(userApiKeys.provider, stored.provider),
    eq(userApiKeys.nonce, stored.nonce),
  );
}
