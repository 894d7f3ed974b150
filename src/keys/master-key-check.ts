import { asc, count, desc, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { userApiKeys } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { formatCount, joinWithAnd, pickForm } from '../text/plural.ts';
import { decryptUserKey, KeyDecryptionError } from './encryption.ts';
import type { Keyring } from './master-keys.ts';

/** Stored keys of one version that are tried, to tell a wrong master key from a few bad rows. */
export const masterKeySampleSize = 5;

/**
 * Decrypts up to `masterKeySampleSize` stored keys of `version`, those not marked
 * undecryptable first. Returns how many were tried and whether one of them decrypted.
 * NOTE: ids are random, so on a version whose keys were encrypted under two master keys (as a
 * process before this check could leave it), which keys are tried, and so the verdict, is
 * random too.
 */
export async function sampleVersion(
  db: Database,
  keyring: Keyring,
  version: number,
): Promise<{ tried: number; decrypted: boolean }> {
  const sample = await db
    .select()
    .from(userApiKeys)
    .where(eq(userApiKeys.masterKeyVersion, version))
    .orderBy(sql`${userApiKeys.unusableCause} IS NOT NULL`, asc(userApiKeys.id))
    .limit(masterKeySampleSize);
  for (const row of sample) {
    try {
      await decryptUserKey(keyring, { userId: row.userId, provider: row.provider }, row);
      return { tried: sample.length, decrypted: true };
    } catch (error) {
      if (!(error instanceof KeyDecryptionError)) throw error;
    }
  }
  return { tried: sample.length, decrypted: false };
}

/**
 * Logs a `master_key.mismatch` error for each configured master key version that decrypts
 * none of the stored keys tried that use it. `keyFile` is the generated key file that version 1
 * was read from, or null when no key file was read. Returns the versions that did not match,
 * for Keyring.markMismatched.
 */
export async function reportMasterKeyMismatches(
  db: Database,
  keyring: Keyring,
  logger: Logger,
  keyFile: string | null,
): Promise<number[]> {
  const mismatched: number[] = [];
  for (const version of keyring.versions) {
    const { tried, decrypted } = await sampleVersion(db, keyring, version);
    if (tried === 0 || decrypted) continue;
    mismatched.push(version);
    const source = keyFile
      ? `Master key version ${version}, read from ${keyFile} because MASTER_KEY and MASTER_KEYS are unset,`
      : `Master key version ${version}`;
    const fix = keyFile
      ? `That file was lost or replaced: stop Fixwright, restore the file from a backup or set ` +
        `MASTER_KEY to the original key, and start it again.`
      : `Set version ${version} in MASTER_KEYS${version === 1 ? ' (or MASTER_KEY)' : ''} to its ` +
        'original key and restart.';
    const outcome =
      tried === 1
        ? 'does not decrypt the one stored provider key that uses it'
        : `decrypts none of the ${tried} stored provider keys tried that use it`;
    const effect =
      version === keyring.currentVersion
        ? 'Until then, previews leave out the stored keys of this version, without marking ' +
          'them unusable, and users cannot save own keys.'
        : 'Until then, previews leave out the stored keys of this version, without marking ' +
          'them unusable.';
    logger.error(
      { event: 'master_key.mismatch', version, triedKeys: tried },
      `${source} ${outcome}, so it differs from the master key that encrypted ` +
        `${tried === 1 ? 'it' : 'them'}. ${fix} ${effect} If the original key is lost, ` +
        `"fixwright keys discard --version ${version} --dry-run" lists the keys that ` +
        'it cannot decrypt, and the same command without --dry-run deletes them.',
    );
  }
  return mismatched;
}

/** A master key version and the number of stored provider keys encrypted under it. */
export interface StoredVersionCount {
  version: number;
  keys: number;
}

/** Counts the stored provider keys by master key version, newest version first. */
export async function countKeysByVersion(db: Database): Promise<StoredVersionCount[]> {
  return db
    .select({ version: userApiKeys.masterKeyVersion, keys: count() })
    .from(userApiKeys)
    .groupBy(userApiKeys.masterKeyVersion)
    .orderBy(desc(userApiKeys.masterKeyVersion));
}

/**
 * Logs one `master_key.version_missing` warning when stored provider keys use master key
 * versions that this process was not given, such as after `keys rotate` when a start lacks
 * MASTER_KEYS and falls back to the generated key file. The warning names the versions that
 * the stored keys use and those missing. `keyFile` is the generated key file that version 1
 * was read from, or null. Returns the missing versions, newest first.
 */
export async function reportMissingMasterKeyVersions(
  db: Database,
  keyring: Keyring,
  logger: Logger,
  keyFile: string | null,
): Promise<number[]> {
  const stored = await countKeysByVersion(db);
  const configured = keyring.versions;
  const missing = stored.filter((entry) => !configured.includes(entry.version));
  if (missing.length === 0) return [];

  const missingVersions = missing.map((entry) => entry.version);
  const missingKeys = missing.reduce((sum, entry) => sum + entry.keys, 0);
  const storedText = joinWithAnd(
    stored.map((entry) => `${entry.version} (${formatCount(entry.keys, 'key')})`),
  );
  const missingText = joinWithAnd(missingVersions.map(String));
  const versionWord = pickForm(missingVersions.length, 'version', 'versions');
  const configuredText =
    keyFile !== null
      ? `MASTER_KEY and MASTER_KEYS are unset, so this process has only master key version 1, ` +
        `read from ${keyFile}.`
      : configured.length === 0
        ? 'This process has no master key.'
        : `This process has master key ${pickForm(configured.length, 'version', 'versions')} ` +
          `${joinWithAnd(configured.map(String))}.`;
  // Setting MASTER_KEYS stops the process from reading the file, so its key must be listed too.
  const keepFileKey =
    keyFile !== null && stored.some((entry) => entry.version === 1)
      ? ` List version 1 there as well, as "1:$(cat ${keyFile})", while stored keys use it.`
      : '';
  logger.warn(
    {
      event: 'master_key.version_missing',
      storedVersions: stored,
      configuredVersions: configured,
      missingVersions,
    },
    `Stored provider keys use master key ${pickForm(stored.length, 'version', 'versions')} ` +
      `${storedText}, but ${versionWord} ` +
      `${missingText} ${pickForm(missingVersions.length, 'is', 'are')} not configured. ${configuredText} ` +
      `Previews leave out the ${formatCount(missingKeys, 'stored key')} of ${versionWord} ` +
      `${missingText} without marking them unusable, and the keys page tells their owners why. ` +
      `Restart every process with ${versionWord} ${missingText} in MASTER_KEYS, set to the ` +
      `original ${pickForm(missingVersions.length, 'key', 'keys')}.${keepFileKey}`,
  );
  return missingVersions;
}
