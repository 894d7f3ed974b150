import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { chmod, link, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BoundedFileError, readBoundedFile } from '../config/bounded-file.ts';
import { dataFileError, prepareDataDir } from '../config/data-dir.ts';
import { ConfigError, decodeMasterKey, type Config, type MasterKeyMaterial } from '../config/env.ts';
import type { Logger } from '../logger.ts';

/** File in the data folder that contains the master key generated for the bundled PostgreSQL. */
export const generatedMasterKeyFile = 'master-key';

/** Raised when a user key must be encrypted but no master key can be used. */
export class KeyringUnavailableError extends Error {
  override name = 'KeyringUnavailableError';
}

/**
 * The master keys by version. The newest one encrypts; any configured one decrypts. The key
 * bytes sit in a private field, so logging or serialising a Keyring shows only the versions.
 */
export class Keyring {
  readonly #keys: Map<number, Uint8Array>;
  readonly #mismatched = new Set<number>();
  readonly #missingReason: string;
  /** Version used for new encryptions; null when no key is configured. */
  readonly currentVersion: number | null;

  constructor(keys: MasterKeyMaterial[], unavailableReason?: string) {
    this.#keys = new Map(keys.map((entry) => [entry.version, entry.key]));
    this.currentVersion = keys.length > 0 ? Math.max(...keys.map((entry) => entry.version)) : null;
    this.#missingReason = unavailableReason ?? 'No master key is configured: set MASTER_KEY.';
  }

  /**
   * Reason no master key can encrypt, with what to do; null when one can. The newest version
   * cannot while it is mismatched, because keys saved under it would not decrypt once the
   * operator restores the original key.
   */
  get unavailableReason(): string | null {
    if (this.currentVersion === null) return this.#missingReason;
    if (!this.#mismatched.has(this.currentVersion)) return null;
    const version = this.currentVersion;
    return (
      `Own keys cannot be saved now: this server's master key version ${version} does not ` +
      'match the one that encrypted the stored keys, so a key saved now would not decrypt once ' +
      `the operator restores it. The operator must restore master key version ${version} and ` +
      'restart Fixwright. Stored keys are kept, and deleting a key still works.'
    );
  }

  /** Configured versions, newest first, mismatched ones included. */
  get versions(): number[] {
    return [...this.#keys.keys()].sort((a, b) => b - a);
  }

  /**
   * Records versions whose key decrypted none of the stored keys tried at start. This keyring
   * then treats them as versions it does not have, so their keys are neither used nor marked
   * unusable, and it encrypts nothing while the newest version is one of them.
   */
  markMismatched(versions: number[]): void {
    for (const version of versions) this.#mismatched.add(version);
  }

  /** True when `version` was marked mismatched. */
  isMismatched(version: number): boolean {
    return this.#mismatched.has(version);
  }

  /** Returns the newest key, or throws KeyringUnavailableError with what to do. */
  current(): MasterKeyMaterial {
    const reason = this.unavailableReason;
    if (reason !== null) throw new KeyringUnavailableError(reason);
    return { version: this.currentVersion!, key: this.#keys.get(this.currentVersion!)! };
  }

  /** Returns the key of `version`, or undefined when that version is not configured or mismatched. */
  get(version: number): Uint8Array | undefined {
    return this.#mismatched.has(version) ? undefined : this.#keys.get(version);
  }

  toJSON(): { versions: number[] } {
    return { versions: this.versions };
  }
}

/**
 * Builds the keyring from MASTER_KEY / MASTER_KEYS. Without either, the bundled PostgreSQL
 * setup uses a key generated once into the data folder, and a setup with DATABASE_URL gets an
 * empty keyring, so storing a user key fails with a message while everything else works.
 */
export async function loadKeyring(config: Config, logger: Logger): Promise<Keyring> {
  const { keyring, keyFile } = await readKeyring(config, logger);
  if (keyFile) logKeyFileUse(logger, keyFile);
  return keyring;
}

/** The generated master key file that a keyring was read from. */
export interface UsedKeyFile {
  path: string;
  /** True when this read generated the file. */
  created: boolean;
}

/**
 * Builds the keyring as loadKeyring does, but returns the generated key file it used, if any,
 * instead of logging it, so that a start can log the warning once its database is up.
 */
export async function readKeyring(
  config: Config,
  logger: Logger,
): Promise<{ keyring: Keyring; keyFile: UsedKeyFile | null }> {
  if (config.masterKeys.length > 0) return { keyring: new Keyring(config.masterKeys), keyFile: null };
  const file = generatedKeyFilePath(config);
  if (file === null) {
    const keyring = new Keyring(
      [],
      'No master key is configured, so own provider keys cannot be stored: set MASTER_KEY on ' +
        'the server to 32 random bytes in base64 (openssl rand -base64 32) and restart it.',
    );
    return { keyring, keyFile: null };
  }

  const { key, created } = await readOrCreateKeyFile(file, logger);
  return { keyring: new Keyring([{ version: 1, key }]), keyFile: { path: file, created } };
}

/** Logs the warning that production must set MASTER_KEY, naming the generated key file used. */
export function logKeyFileUse(logger: Logger, keyFile: UsedKeyFile): void {
  const file = keyFile.path;
  logger.warn(
    { event: keyFile.created ? 'master_key.generated' : 'master_key.file_used', path: file },
    `Using master key version 1 from ${file}, because MASTER_KEY and MASTER_KEYS are unset. ` +
      "Production must set MASTER_KEY, to that file's content if users have stored keys under " +
      'version 1. After "fixwright keys rotate" moved the stored keys to a later version, that ' +
      'file no longer decrypts them, so set MASTER_KEYS again with the versions they use, ' +
      'which master_key.version_missing names at start.',
  );
}

/**
 * Returns the path of the generated master key file that `loadKeyring` reads, or null when
 * MASTER_KEY, MASTER_KEYS or DATABASE_URL is set, since then no file is read.
 */
export function generatedKeyFilePath(config: Config): string | null {
  if (config.masterKeys.length > 0 || config.DATABASE_URL) return null;
  return path.join(config.dataDir, generatedMasterKeyFile);
}

async function readOrCreateKeyFile(
  file: string,
  logger: Logger,
): Promise<{ key: Uint8Array; created: boolean }> {
  const dataDir = path.dirname(file);
  await prepareDataDir(dataDir);
  // The key is written to a file of its own and then linked into place, so a process that
  // starts at the same time never reads the file before its content is there.
  const draft = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  let created = false;
  try {
    await writeFile(draft, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    await chmod(draft, 0o600);
    await link(draft, file);
    created = true;
  } catch (error) {
    // Another process created the file first, or an earlier start did: use that key.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw dataFileError(dataDir, file, 'create the master key file', error);
    }
  } finally {
    // A draft left behind is harmless, and the error of the write above is the one to report.
    await rm(draft, { force: true }).catch(() => undefined);
  }
  if (!created) await restrictKeyFileMode(file, logger);
  return { key: await readKeyFile(file), created };
}

/** Makes an existing key file readable by its owner only, and logs when it was not. */
async function restrictKeyFileMode(file: string, logger: Logger): Promise<void> {
  const dataDir = path.dirname(file);
  let stats: Stats;
  try {
    stats = await stat(file);
  } catch (error) {
    throw dataFileError(dataDir, file, 'read the master key file', error);
  }
  // A path that leads to a device or a FIFO keeps its mode, and readKeyFile rejects it.
  if (!stats.isFile()) return;
  const mode = stats.mode & 0o777;
  if ((mode & 0o077) === 0) return;
  try {
    await chmod(file, 0o600);
  } catch (error) {
    throw dataFileError(dataDir, file, 'change the mode of the master key file', error);
  }
  logger.warn(
    { event: 'master_key.file_mode_fixed', path: file, mode: mode.toString(8) },
    `${file} was readable by other users; its mode is now 600`,
  );
}

/** Largest master key file read, in bytes. A valid one is 45: 44 base64 characters and a newline. */
const maxKeyFileBytes = 1024;

async function readKeyFile(file: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = (await readBoundedFile(file, maxKeyFileBytes)).toString('utf8');
  } catch (error) {
    if (error instanceof BoundedFileError) {
      throw new ConfigError(
        `Invalid master key file: ${error.message}. It must be a regular file that contains 32 ` +
          'random bytes in base64. Restore it from a backup, or delete it if no user has stored ' +
          'a key yet so a new one is generated.',
      );
    }
    throw dataFileError(path.dirname(file), file, 'read the master key file', error);
  }
  const decoded = decodeMasterKey(text.trim());
  if (typeof decoded === 'string') {
    throw new ConfigError(
      `Invalid master key file ${file}: it must hold 32 random bytes in base64. Restore it ` +
        'from a backup, or delete it if no user has stored a key yet so a new one is generated.',
    );
  }
  return decoded;
}
