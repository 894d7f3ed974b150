import { and, eq, sql } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { userApiKeys, type KeySource, type Provider, type UnusableCause } from '../db/schema/index.ts';
import { providerNames } from '../llm/retry.ts';
import { joinWithAnd, pickForm } from '../text/plural.ts';
import type { Logger } from '../logger.ts';
import { decryptUserKey, KeyDecryptionError } from './encryption.ts';
import type { Keyring } from './master-keys.ts';
import { describePlatformKeyRejection, operatorMustReplace } from './platform-key-rejections.ts';

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

/**
 * The last words of the reasons that send the user to the keys page. Stored reasons end with
 * them too, so the keys page can replace them (see phraseForKeysPage).
 */
const keysPageStep = 'on the keys page.';

/**
 * Rewords a reason that ends by sending the user to the keys page for the keys page itself,
 * which shows the form to save a key below the reason. Other reasons are returned unchanged.
 */
export function phraseForKeysPage(reason: string): string {
  if (!reason.endsWith(` ${keysPageStep}`)) return reason;
  return `${reason.slice(0, -keysPageStep.length)}with the form below.`;
}

/** Builds the message stored and shown when a key does not decrypt. */
export function undecryptableReason(provider: Provider): string {
  const name = providerNames[provider];
  return (
    `Your saved ${name} key could not be decrypted; the master key may have changed. ` +
    `Save the ${name} key again on the keys page.`
  );
}

/**
 * Builds the message stored and shown when the provider rejected a saved key in a preview. It
 * names no other own key, because the key a preview calls instead depends on the user's other
 * keys. With `platformKeyConfigured`, it adds that the saved key also keeps previews from the
 * platform key of the provider, which deleting the saved key ends (see chooseKeys).
 */
export function rejectedReason(
  provider: Provider,
  status: number | undefined,
  platformKeyConfigured = false,
): string {
  const name = providerNames[provider];
  const statusText = status !== undefined ? ` with HTTP ${status}` : '';
  const rejected = `${name} rejected your saved ${name} key${statusText}.`;
  if (!platformKeyConfigured) {
    return `${rejected} Previews skip this key until you save it again ${keysPageStep}`;
  }
  return (
    `${rejected} Previews skip this key, and the platform ${name} key while this key is saved. ` +
    `Delete it to let previews use the platform key, or save it again ${keysPageStep}`
  );
}

/**
 * A key that a file's request passed over before the user's own key produced its result. The
 * provider `rejected` a platform or own key with HTTP `status`, or the user `deleted` an own key
 * while the preview ran. An own key is `unusable` for `reason` when it was replaced or
 * re-encrypted by a key that does not decrypt here.
 */
export type PassedOverKey =
  | { provider: Provider; keySource: KeySource; cause: 'rejected'; status?: number | undefined }
  | { provider: Provider; keySource: 'user'; cause: 'deleted' }
  | { provider: Provider; keySource: 'user'; cause: 'unusable'; reason: string };

/**
 * Builds the message stored with a file whose result came from the user's own key of `used`
 * after the request passed over each key of `passed`.
 */
export function passedOverKeysNotice(passed: readonly PassedOverKey[], used: Provider): string {
  const clauses = passed.map(describePassedOverKey);
  const sentence = joinWithAnd(clauses);
  let notice =
    `${sentence.charAt(0).toUpperCase()}${sentence.slice(1)}, so this file used your own ` +
    `${providerNames[used]} key, the next in your provider order`;
  if (passed.some((key) => key.keySource === 'user')) notice += ', and not the platform key';
  notice += '.';

  const rejectedOwn = passed.filter((key) => key.keySource === 'user' && key.cause === 'rejected');
  if (rejectedOwn.length > 0) {
    const names = joinWithAnd(rejectedOwn.map(({ provider }) => providerNames[provider]));
    notice += ` Update your ${names} ${pickForm(rejectedOwn.length, 'key', 'keys')} on the keys page.`;
  }
  for (const key of passed) {
    if (key.cause === 'unusable') notice += ` ${key.reason}`;
    if (key.cause === 'rejected' && key.keySource === 'platform') notice += ` ${operatorMustReplace(key.provider)}`;
  }
  return notice;
}

function describePassedOverKey(key: PassedOverKey): string {
  const name = providerNames[key.provider];
  switch (key.cause) {
    case 'rejected': {
      if (key.keySource === 'platform') return describePlatformKeyRejection(key.provider, key.status);
      const status = key.status !== undefined ? ` (HTTP ${key.status})` : '';
      return `${name} rejected your saved ${name} key${status}`;
    }
    case 'deleted':
      return `your saved ${name} key was deleted while this preview ran`;
    case 'unusable':
      return `your saved ${name} key changed while this preview ran and could not be used`;
  }
}

/**
 * Builds the message of a file call that did not start because the user deleted their saved
 * key of `provider` after the preview read it.
 */
export function deletedKeyReason(provider: Provider): string {
  const name = providerNames[provider];
  return (
    `Your saved ${name} key was deleted while this preview ran, so this file was not sent ` +
    `with it, and the platform key was not used instead. Regenerate the file to preview it ` +
    'with the keys you have now.'
  );
}

/**
 * Builds the message shown when a key is encrypted under a master key version that this
 * process was not started with. The key itself is intact, so the fix is the operator's.
 */
export function missingVersionReason(provider: Provider, version: number): string {
  const name = providerNames[provider];
  return (
    `Your saved ${name} key is encrypted under master key version ${version}, which this ` +
    `Fixwright process does not have. The operator must restart it with version ${version} in ` +
    'MASTER_KEYS. The key does not need to be saved again.'
  );
}

/**
 * Builds the message shown when a key is encrypted under a master key version whose key in
 * this process decrypted none of the stored keys tried at start. The key itself is intact.
 */
export function mismatchedVersionReason(provider: Provider, version: number): string {
  const name = providerNames[provider];
  return (
    `Your saved ${name} key is encrypted under master key version ${version}, and this ` +
    `server's master key version ${version} does not match it. The operator must restore the ` +
    `original master key version ${version} and restart Fixwright. The key does not need to be ` +
    'saved again.'
  );
}

/** A stored key row as selected from user_api_keys. */
export type StoredKeyRow = typeof userApiKeys.$inferSelect;

/** Returns the user's stored key row of `provider`, or undefined when none is stored. */
export async function findStoredKey(
  db: Database | Transaction,
  owner: { userId: string; provider: Provider },
): Promise<StoredKeyRow | undefined> {
  const [row] = await db
    .select()
    .from(userApiKeys)
    .where(and(eq(userApiKeys.userId, owner.userId), eq(userApiKeys.provider, owner.provider)));
  return row;
}

/**
 * Decrypts the user's stored keys for one job. A key the provider rejected stays unusable
 * until it is saved again. See openStoredKey for keys that do not decrypt.
 */
export async function loadOwnKeys(
  context: { db: Database; keyring: Keyring; logger: Logger },
  userId: string,
): Promise<Map<Provider, OwnKey>> {
  const rows = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));
  const keys = new Map<Provider, OwnKey>();
  for (const row of rows) keys.set(row.provider, await openStoredKey(context, row));
  return keys;
}

/**
 * Decrypts one stored key and keeps its mark in step with the result. A key whose master key
 * version this process lacks, or found mismatched at start, is reported but not marked,
 * because restarting the process with the right key for that version fixes it. A key that
 * fails authentication is marked unusable. A key marked so earlier that decrypts now (its
 * master key is back) is used and unmarked.
 */
export async function openStoredKey(
  context: { db: Database | Transaction; keyring: Keyring; logger: Logger },
  row: StoredKeyRow,
): Promise<OwnKey> {
  const { db, keyring, logger } = context;
  const { userId, provider } = row;
  if (row.unusableCause === 'rejected') {
    return { provider, usable: false, reason: row.unusableReason ?? rejectedReason(provider, undefined) };
  }
  const stored = { userId, provider, nonce: row.nonce };
  try {
    const key = await decryptUserKey(keyring, { userId, provider }, row);
    if (row.unusableCause === 'undecryptable') {
      await clearUnusable(db, stored);
      logger.info({ event: 'user_key.decryptable_again', userId, provider }, 'stored key decrypts again');
    }
    return { provider, usable: true, key, stored };
  } catch (error) {
    if (!(error instanceof KeyDecryptionError)) throw error;
    if (error.reason === 'missing_version') {
      // `keys rotate`, or a process started with a newer MASTER_KEYS, re-encrypted the key
      // under a version this process was not given.
      logger.warn(
        {
          event: 'user_key.master_key_version_missing',
          userId,
          provider,
          masterKeyVersion: row.masterKeyVersion,
          configuredVersions: keyring.versions,
        },
        'stored key uses a master key version this process does not have',
      );
      return { provider, usable: false, reason: missingVersionReason(provider, row.masterKeyVersion) };
    }
    if (error.reason === 'mismatched_version') {
      // The start check logged master_key.mismatch; every key of this version fails alike.
      logger.warn(
        { event: 'user_key.master_key_mismatched', userId, provider, masterKeyVersion: row.masterKeyVersion },
        'stored key uses a master key version that did not match the stored keys at start',
      );
      return { provider, usable: false, reason: mismatchedVersionReason(provider, row.masterKeyVersion) };
    }

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
    return { provider, usable: false, reason };
  }
}

// The updates below keep updated_at, which records when the user last saved the key.

/**
 * Marks the saved key unusable, unless it was replaced since it was loaded. With `sent`, the
 * same update records it as used now, as markKeyUsed does, for a key that the provider rejected.
 */
export async function markKeyUnusable(
  db: Database | Transaction,
  stored: StoredKeyRef,
  cause: UnusableCause,
  reason: string,
  options: { sent?: boolean } = {},
): Promise<void> {
  await db
    .update(userApiKeys)
    .set({
      unusableCause: cause,
      unusableReason: reason,
      updatedAt: sql`${userApiKeys.updatedAt}`,
      ...(options.sent ? { lastUsedAt: sql`now()` } : {}),
    })
    .where(matches(stored));
}

/**
 * Records that the provider responded to a call made with the saved key: accepted it, billed a
 * failed attempt, or rejected it with an HTTP status.
 */
export async function markKeyUsed(db: Database, stored: StoredKeyRef): Promise<void> {
  await db
    .update(userApiKeys)
    .set({ lastUsedAt: sql`now()`, updatedAt: sql`${userApiKeys.updatedAt}` })
    .where(matches(stored));
}

async function clearUnusable(db: Database | Transaction, stored: StoredKeyRef): Promise<void> {
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
