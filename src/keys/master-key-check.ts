import { existsSync } from 'node:fs';
import path from 'node:path';
import { asc, count, desc, eq, sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { userApiKeys } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { formatCount, joinWithAnd, pickForm } from '../text/plural.ts';
import { decryptUserKey, KeyDecryptionError } from './encryption.ts';
import { generatedKeyFilePath, generatedMasterKeyFile, type Keyring } from './master-keys.ts';

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
 * was read from, or null when no key file was read. `unreadKeyFile` is a generated key file
 * that exists but was not read because MASTER_KEY or MASTER_KEYS is set, which may contain the
 * original key of version 1. Returns the versions that did not match, for
 * Keyring.markMismatched.
 */
export async function reportMasterKeyMismatches(
  db: Database,
  keyring: Keyring,
  logger: Logger,
  keyFile: string | null,
  unreadKeyFile: string | null = null,
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
        `original key and restart.${version === 1 ? describeUnreadKeyFile(unreadKeyFile) : ''}`;
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

/**
 * Names the generated key file that MASTER_KEY or MASTER_KEYS replaced, whose key encrypted the
 * keys saved before either was set, or returns an empty string when there is no such file.
 */
function describeUnreadKeyFile(file: string | null): string {
  if (file === null) return '';
  return (
    ` The key generated in ${file}, used while MASTER_KEY and MASTER_KEYS were unset, is ` +
    `version 1 of the keys saved then: set MASTER_KEY to $(cat ${file}), or list it in ` +
    `MASTER_KEYS as 1:$(cat ${file}).`
  );
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

/** The stored provider keys per master key version, and those of versions a keyring lacks. */
export interface StoredKeyVersions {
  /** Every version that stored keys use, newest first. */
  stored: StoredVersionCount[];
  /** The entries of `stored` whose version the keyring does not have, newest first. */
  missing: StoredVersionCount[];
}

/** Counts the stored provider keys by master key version and picks those `keyring` lacks. */
export async function findMissingMasterKeyVersions(
  db: Database,
  keyring: Keyring,
): Promise<StoredKeyVersions> {
  const stored = await countKeysByVersion(db);
  return { stored, missing: stored.filter((entry) => !keyring.versions.includes(entry.version)) };
}

/**
 * The program that found stored keys of a version it lacks. The message states what this
 * program did with those keys and what to run next.
 */
export type MissingVersionsFinder =
  | { command: 'start' }
  | { command: 'keys rotate' }
  | { command: 'keys discard'; version: number };

/** Generated master key files that the missing-versions message may name. */
export interface MasterKeyFiles {
  /** The file that version 1 was read from because MASTER_KEY and MASTER_KEYS are unset. */
  read: string | null;
  /** A generated file that exists but was not read, because MASTER_KEYS is set. */
  unread?: string | null;
}

/**
 * Finds the generated master key files that `config` reads, or that exist without being read.
 * With the bundled PostgreSQL and MASTER_KEYS set, the file may still contain the version 1
 * key generated before MASTER_KEYS was set.
 */
export function findMasterKeyFiles(config: Config): MasterKeyFiles {
  const read = generatedKeyFilePath(config);
  if (read !== null || config.DATABASE_URL) return { read, unread: null };
  const file = path.join(config.dataDir, generatedMasterKeyFile);
  return { read, unread: existsSync(file) ? file : null };
}

/**
 * Builds the message about stored keys of versions that `configured` lacks: every stored
 * version with its number of keys, the versions this program has, what happens to the keys of
 * the missing versions, and which MASTER_KEYS entries to add. `found.missing` must not be empty.
 */
export function describeMissingMasterKeyVersions(
  found: StoredKeyVersions,
  configured: number[],
  finder: MissingVersionsFinder,
  keyFiles: MasterKeyFiles,
): string {
  const { stored, missing } = found;
  const missingVersions = missing.map((entry) => entry.version);
  const storedText = joinWithAnd(
    stored.map((entry) => `${entry.version} (${formatCount(entry.keys, 'key')})`),
  );
  const missingText = joinWithAnd(missingVersions.map(String));
  const versionWord = pickForm(missingVersions.length, 'version', 'versions');
  const program = finder.command === 'start' ? 'process' : 'command';
  const configuredText =
    keyFiles.read !== null
      ? `MASTER_KEY and MASTER_KEYS are unset, so this ${program} has only master key version 1, ` +
        `read from ${keyFiles.read}.`
      : configured.length === 0
        ? `This ${program} has no master key.`
        : `This ${program} has master key ${pickForm(configured.length, 'version', 'versions')} ` +
          `${joinWithAnd(configured.map(String))}.`;
  // Setting MASTER_KEYS stops the process from reading the file, so its key must be listed too.
  const keepFileKey =
    keyFiles.read !== null && stored.some((entry) => entry.version === 1)
      ? ` List version 1 there as well, as "1:$(cat ${keyFiles.read})", while stored keys use it.`
      : '';
  // With MASTER_KEYS set, the file still contains the key that version 1 had before it was set.
  const unreadFileKey =
    keyFiles.unread && missingVersions.includes(1)
      ? ` The master key generated in ${keyFiles.unread}, used while MASTER_KEY and MASTER_KEYS ` +
        `were unset, is version 1: add 1:$(cat ${keyFiles.unread}) to MASTER_KEYS.`
      : '';
  return (
    `Stored provider keys use master key ${pickForm(stored.length, 'version', 'versions')} ` +
    `${storedText}, but ${versionWord} ${missingText} ` +
    `${pickForm(missingVersions.length, 'is', 'are')} not configured. ${configuredText} ` +
    `${describeMissingKeysOutcome(missing, finder)}${keepFileKey}${unreadFileKey}`
  );
}

/** Describes what happens to the keys of the `missing` versions, and what to set, for `finder`. */
function describeMissingKeysOutcome(
  missing: StoredVersionCount[],
  finder: MissingVersionsFinder,
): string {
  const versionCount = missing.length;
  const keyCount = missing.reduce((sum, entry) => sum + entry.keys, 0);
  const versionNumbers = joinWithAnd(missing.map((entry) => String(entry.version)));
  const versionsText = `${pickForm(versionCount, 'version', 'versions')} ${versionNumbers}`;
  const keysText = `${formatCount(keyCount, 'stored key')} of ${versionsText}`;
  const them = pickForm(keyCount, 'it', 'them');
  const setOriginal = `in MASTER_KEYS, set to the original ${pickForm(versionCount, 'key', 'keys')}`;
  const leftOut =
    `a process without ${pickForm(versionCount, 'that version', 'those versions')} leaves ${them} ` +
    'out of previews';
  switch (finder.command) {
    case 'start':
      return (
        `Previews leave out the ${keysText} without marking ${them} unusable, and the keys page ` +
        `tells ${pickForm(keyCount, 'its owner', 'their owners')} why. Restart every process with ` +
        `${versionsText} ${setOriginal}.`
      );
    case 'keys rotate':
      return (
        `The rotation left the ${keysText} as ${pickForm(keyCount, 'it was', 'they were')}, and ` +
        `${leftOut}. Run "fixwright keys rotate" again with ${versionsText} ${setOriginal}.`
      );
    case 'keys discard':
      return (
        `The command checks only the keys of version ${finder.version}, so it leaves the ${keysText} ` +
        `alone, and ${leftOut}. Restart every process with ${versionsText} ${setOriginal}.`
      );
  }
}

/**
 * Logs one `master_key.version_missing` warning when stored provider keys use master key
 * versions that this process was not given, such as after `keys rotate` when a start lacks
 * MASTER_KEYS and falls back to the generated key file. The warning names the versions that
 * the stored keys use and those missing, and the generated key files of `keyFiles` (see
 * findMasterKeyFiles), as the keys commands do. Returns the missing versions, newest first.
 */
export async function reportMissingMasterKeyVersions(
  db: Database,
  keyring: Keyring,
  logger: Logger,
  keyFiles: MasterKeyFiles,
): Promise<number[]> {
  const found = await findMissingMasterKeyVersions(db, keyring);
  if (found.missing.length === 0) return [];

  const missingVersions = found.missing.map((entry) => entry.version);
  logger.warn(
    {
      event: 'master_key.version_missing',
      storedVersions: found.stored,
      configuredVersions: keyring.versions,
      missingVersions,
    },
    describeMissingMasterKeyVersions(found, keyring.versions, { command: 'start' }, keyFiles),
  );
  return missingVersions;
}
