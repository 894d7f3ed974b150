import { existsSync } from 'node:fs';
import type { Config, MasterKeySettings } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { checkDataDirOpenToPostgres } from '../db/postgres-user.ts';
import {
  describeMissingMasterKeyVersions,
  findMasterKeyFiles,
  findMissingMasterKeyVersions,
  type MissingVersionsFinder,
} from '../keys/master-key-check.ts';
import { generatedKeyFilePath, loadKeyring, type Keyring } from '../keys/master-keys.ts';
import {
  describeMatchingVersion,
  discardUndecryptableKeys,
  MasterKeyMatchesError,
  type DiscardReport,
} from '../keys/discard.ts';
import { MasterKeyMismatchError, rotateUserKeys, type RotationReport } from '../keys/rotate.ts';
import type { Logger } from '../logger.ts';
import { formatCount, joinWithAnd, pickForm } from '../text/plural.ts';
import { CommandError, CommandFailedError } from './command-error.ts';
import { parseCommandOptions, parseDecimal, rejectOtherOptions, suggestClosest } from './parse-options.ts';
import { checkBundledDatabaseExists } from '../database.ts';
import { withDatabase } from './with-database.ts';

const subcommands = ['rotate', 'discard'] as const;

/** Options that each keys subcommand takes. */
const subcommandOptions: Record<(typeof subcommands)[number], string[]> = {
  rotate: ['batch-size'],
  discard: ['version', 'dry-run'],
};

/**
 * `fixwright keys rotate [--batch-size N]`: re-encrypts stored provider keys under the newest
 * master key. Exits 1 when some keys could not be rotated, so scripts notice.
 * `fixwright keys discard --version N [--dry-run]`: deletes the stored keys of version N that
 * its configured master key does not decrypt, for an operator who lost the original key.
 */
export async function runKeysCommand(config: Config, logger: Logger, args: string[]): Promise<number> {
  const [subcommand, ...rest] = args;
  const choices = 'use rotate or discard';
  if (!subcommand) throw new CommandError(`Missing keys command: ${choices}.`);
  if (!subcommands.includes(subcommand as (typeof subcommands)[number])) {
    throw new CommandError(
      `Unknown keys command ${JSON.stringify(subcommand)}: ${choices}.${suggestClosest(subcommand, subcommands)}`,
    );
  }
  const command = `keys ${subcommand}`;
  const { values, suppliedOptions } = parseCommandOptions(command, rest, {
    'batch-size': { type: 'string' },
    version: { type: 'string' },
    'dry-run': { type: 'boolean' },
  });
  const accepted = subcommandOptions[subcommand as (typeof subcommands)[number]];
  rejectOtherOptions(command, suppliedOptions, accepted);
  if (subcommand === 'discard') return runDiscard(config, logger, values);

  const batchSize = parseDecimal(values['batch-size'] ?? '100');
  if (batchSize === null || batchSize < 1 || batchSize > 10_000) {
    throw new CommandError(
      `Invalid --batch-size ${JSON.stringify(values['batch-size'])}: use a whole number from 1 to 10000.`,
    );
  }

  // loadKeyring may generate the master key file in DATA_DIR, which must not be created when
  // DATA_DIR has no database or the bundled PostgreSQL cannot use it.
  await checkBundledDatabaseExists(config, command);
  if (!config.DATABASE_URL) await checkDataDirOpenToPostgres(config.dataDir);
  const keyring = await loadKeyring(config, logger);
  if (keyring.currentVersion === null) {
    throw new CommandError(
      'Missing master keys: keys rotate re-encrypts stored keys under the newest master key, so ' +
        'set MASTER_KEYS to the new and the old versions, such as "2:<new key>,1:<old key>", ' +
        'as the service processes have them.',
    );
  }

  return withDatabase(config, logger, async (db) => {
    let report: RotationReport;
    try {
      report = await rotateUserKeys(db, keyring, logger, { batchSize });
    } catch (error) {
      if (error instanceof MasterKeyMismatchError) throw new CommandFailedError(error.message);
      throw error;
    }
    const lines = describeReport(report, keyring.versions, config.masterKeySettings);
    const missing = await describeMissingVersions(db, keyring, config, { command: 'keys rotate' });
    if (missing !== null) lines.push(missing);
    for (const line of lines) console.log(line);
    return report.missingVersions.size > 0 || report.undecryptable > 0 ? 1 : 0;
  }, { command });
}

/** Runs `keys discard` with the parsed options. */
async function runDiscard(
  config: Config,
  logger: Logger,
  values: { version?: string; 'dry-run'?: boolean },
): Promise<number> {
  if (values.version === undefined) {
    throw new CommandError('Missing --version: give the master key version whose lost key encrypted the keys to delete.');
  }
  const version = parseDecimal(values.version);
  if (version === null || version < 1) {
    throw new CommandError(`Invalid --version ${JSON.stringify(values.version)}: use a whole number from 1.`);
  }
  // A DATA_DIR without a database has no key file either, so the missing database is named first.
  await checkBundledDatabaseExists(config, 'keys discard');
  // A key file generated now would match no stored key, so every key would look lost.
  const keyFile = generatedKeyFilePath(config);
  if (keyFile !== null && !existsSync(keyFile)) {
    throw new CommandError(
      `Missing master key: MASTER_KEY and MASTER_KEYS are unset and ${keyFile} does not exist, ` +
        'so no key is configured to check the stored keys with. Set them as the service processes have them.',
    );
  }
  if (!config.DATABASE_URL) await checkDataDirOpenToPostgres(config.dataDir);
  const keyring = await loadKeyring(config, logger);
  if (!keyring.get(version)) {
    throw new CommandError(
      `Master key version ${version} is not configured: keys discard deletes only the keys of a ` +
        'version that its configured key cannot decrypt, so run it with the same MASTER_KEY or ' +
        'MASTER_KEYS as the service processes.',
    );
  }
  const dryRun = values['dry-run'] ?? false;
  return withDatabase(config, logger, async (db) => {
    let lines: string[];
    try {
      lines = describeDiscard(await discardUndecryptableKeys(db, keyring, logger, { version, dryRun }));
    } catch (error) {
      if (!(error instanceof MasterKeyMatchesError)) throw error;
      // A dry run that finds nothing to delete has done its job, so only the deleting run fails.
      if (!dryRun) throw new CommandFailedError(error.message);
      lines = [`Dry run: nothing would be deleted. ${describeMatchingVersion(version)}`];
    }
    const missing = await describeMissingVersions(db, keyring, config, { command: 'keys discard', version });
    if (missing !== null) lines.push(missing);
    for (const line of lines) console.log(line);
    return 0;
  }, { command: 'keys discard' });
}

/**
 * Builds the message that a start logs as `master_key.version_missing` when stored keys use
 * versions that `keyring` lacks, worded for a keys command. Returns null when it has them all.
 */
async function describeMissingVersions(
  db: Database,
  keyring: Keyring,
  config: Config,
  finder: MissingVersionsFinder,
): Promise<string | null> {
  const found = await findMissingMasterKeyVersions(db, keyring);
  if (found.missing.length === 0) return null;
  return describeMissingMasterKeyVersions(found, keyring.versions, finder, findMasterKeyFiles(config));
}

/**
 * Builds the lines `keys discard` prints: how many keys were (or would be) deleted, and whose,
 * one line per user with the providers, then what to do next.
 */
export function describeDiscard(report: DiscardReport): string[] {
  const { version, dryRun, discarded, kept } = report;
  const count = discarded.length;
  if (count === 0) {
    return [`No stored key of master key version ${version} fails to decrypt; nothing was deleted.`];
  }
  const lines = [
    dryRun
      ? `${formatCount(count, 'stored key')} of master key version ${version} ` +
        `${pickForm(count, 'does', 'do')} not decrypt with the configured key and would be deleted:`
      : `Deleted ${formatCount(count, 'stored key')} of master key version ${version} that ` +
        `${pickForm(count, 'does', 'do')} not decrypt with the configured key:`,
  ];
  const byLogin = new Map<string, string[]>();
  for (const { login, provider } of discarded) byLogin.set(login, [...(byLogin.get(login) ?? []), provider]);
  for (const [login, providers] of byLogin) lines.push(`  ${login}: ${providers.join(', ')}`);
  if (kept > 0) {
    lines.push(
      `${formatCount(kept, 'key')} of version ${version} ${pickForm(kept, 'decrypts', 'decrypt')} ` +
        `and ${pickForm(kept, 'is', 'are')} kept.`,
    );
  }
  if (dryRun) {
    lines.push('Dry run: nothing was deleted. Run the command without --dry-run to delete them.');
  } else {
    // A running process keeps the mismatch it found at start, and refuses saves while the
    // mismatched version is its newest.
    lines.push(
      `${pickForm(count, 'Its owner', 'Their owners')} must save ${pickForm(count, 'it', 'them')} ` +
        'again. Restart every Fixwright process, web and worker, so that it no longer reports ' +
        `master_key.mismatch for version ${version} and users can save keys again.`,
    );
  }
  return lines;
}

/**
 * Builds the lines printed after a rotation: counts, undecryptable keys and removable versions.
 * `configured` lists the keyring's versions, and `settings` records which variables set them.
 * The keys of versions that are not configured are described by describeMissingVersions.
 */
export function describeReport(
  report: RotationReport,
  configured: number[],
  settings: MasterKeySettings,
): string[] {
  const lines = [
    `Rotated ${formatCount(report.rotated, 'key')} to master key version ${report.targetVersion}; ` +
      `${report.alreadyCurrent} already used it.`,
  ];
  if (report.rotated > 0) {
    // A process without the target version cannot decrypt the rotated keys until it restarts.
    lines.push(
      `Every Fixwright process needs master key version ${report.targetVersion} in MASTER_KEYS ` +
        'to use the rotated keys: restart any process that was started without it.',
    );
  }
  if (report.undecryptable > 0) {
    // A wrong key in MASTER_KEYS fails every key of its version, and a run with the right key
    // decrypts and unmarks them, so the owners need not save them again.
    lines.push(
      `${formatCount(report.undecryptable, 'key')} could not be decrypted, so ` +
        `${pickForm(report.undecryptable, 'it is', 'they are')} marked unusable. If a key in ` +
        'MASTER_KEYS is wrong, correct it and run "fixwright keys rotate" again, which clears ' +
        `the mark; otherwise ${pickForm(report.undecryptable, 'the', 'each')} owner must save ` +
        'the key again.',
    );
  }
  const removable = configured.filter((version) => !report.versionsInUse.includes(version));
  const unused = removable.filter((version) => version !== report.targetVersion);
  if (unused.length > 0) {
    lines.push(
      `No stored key uses master key ${pickForm(unused.length, 'version', 'versions')} ` +
        `${joinWithAnd(unused.map(String))} any more; ${describeRemoval(unused, settings)} when ` +
        'every server runs with the new key.',
    );
  }
  return lines;
}

/** Describes how to remove the `unused` versions, naming only the variables that set them. */
function describeRemoval(unused: number[], settings: MasterKeySettings): string {
  const listed = unused.filter((version) => settings.masterKeysVersions.includes(version));
  const steps: string[] = [];
  if (listed.length === unused.length) {
    steps.push(`remove ${pickForm(listed.length, 'it', 'them')} from MASTER_KEYS`);
  } else if (listed.length > 0) {
    steps.push(
      `remove ${pickForm(listed.length, 'version', 'versions')} ${joinWithAnd(listed.map(String))} ` +
        'from MASTER_KEYS',
    );
  }
  if (settings.masterKeySet && unused.includes(1)) steps.push('unset MASTER_KEY');
  return steps.join(' and ');
}
