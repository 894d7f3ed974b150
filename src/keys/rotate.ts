import { count, eq, ne, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { userApiKeys } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { decryptUserKey, encryptUserKey, KeyDecryptionError } from './encryption.ts';
import { lockNextKeys } from './key-batches.ts';
import { sampleVersion } from './master-key-check.ts';
import type { Keyring } from './master-keys.ts';
import { undecryptableReason } from './own-keys.ts';

export interface RotationReport {
  /** The newest configured master key version, which every rotated key now uses. */
  targetVersion: number;
  rotated: number;
  /** Keys that used the target version before this run. */
  alreadyCurrent: number;
  /** Keys left as they are because their master key version is not configured, by version. */
  missingVersions: Map<number, number>;
  /** Keys that failed to decrypt under their configured version; they are marked unusable. */
  undecryptable: number;
  /** Master key versions that stored keys use after the run, newest first. */
  versionsInUse: number[];
}

/**
 * Raised before a rotation changes anything, when a configured master key decrypts none of the
 * stored keys tried that use its version. Rotating with the newest one would put keys
 * encrypted under two different master keys behind one version number, and with an older one
 * would mark every key of that version unusable.
 */
export class MasterKeyMismatchError extends Error {
  override name = 'MasterKeyMismatchError';
}

/**
 * Re-encrypts every stored key that is not under the newest master key, `batchSize` rows per
 * transaction with the rows locked, so saves and rotations running at the same time wait for
 * each other. Safe to re-run: keys already under the newest version are not touched.
 */
export async function rotateUserKeys(
  db: Database,
  keyring: Keyring,
  logger: Logger,
  options: { batchSize?: number } = {},
): Promise<RotationReport> {
  const batchSize = options.batchSize ?? 100;
  const targetVersion = keyring.current().version;
  const [current] = await db
    .select({ value: count() })
    .from(userApiKeys)
    .where(eq(userApiKeys.masterKeyVersion, targetVersion));
  await checkConfiguredKeys(db, keyring);
  const report: RotationReport = {
    targetVersion,
    rotated: 0,
    alreadyCurrent: current?.value ?? 0,
    missingVersions: new Map(),
    undecryptable: 0,
    versionsInUse: [],
  };

  // Rows that cannot be rotated keep their version, so the scan moves on by id to end.
  let afterId: string | null = null;
  for (;;) {
    const lastId: string | null = await db.transaction(async (tx) => {
      const rows = await lockNextKeys(tx, ne(userApiKeys.masterKeyVersion, targetVersion), afterId, batchSize);

      for (const row of rows) {
        const owner = { userId: row.userId, provider: row.provider };
        let plaintext: string;
        try {
          plaintext = await decryptUserKey(keyring, owner, row);
        } catch (error) {
          if (!(error instanceof KeyDecryptionError)) throw error;
          if (error.reason === 'missing_version') {
            const version = row.masterKeyVersion;
            report.missingVersions.set(version, (report.missingVersions.get(version) ?? 0) + 1);
            continue;
          }
          report.undecryptable++;
          if (row.unusableCause === 'undecryptable') continue;
          await tx
            .update(userApiKeys)
            .set({
              unusableCause: 'undecryptable',
              unusableReason: undecryptableReason(row.provider),
              updatedAt: sql`${userApiKeys.updatedAt}`,
            })
            .where(eq(userApiKeys.id, row.id));
          continue;
        }

        const encrypted = await encryptUserKey(keyring, owner, plaintext);
        const healed = row.unusableCause === 'undecryptable';
        await tx
          .update(userApiKeys)
          .set({
            ...encrypted,
            // updated_at records when the user saved the key, which rotation does not change.
            updatedAt: sql`${userApiKeys.updatedAt}`,
            ...(healed ? { unusableCause: null, unusableReason: null } : {}),
          })
          .where(eq(userApiKeys.id, row.id));
        report.rotated++;
      }
      return rows.length === batchSize ? rows.at(-1)!.id : null;
    });
    if (lastId === null) break;
    afterId = lastId;
  }

  const versions = await db
    .selectDistinct({ version: userApiKeys.masterKeyVersion })
    .from(userApiKeys);
  report.versionsInUse = versions.map((row) => row.version).sort((a, b) => b - a);
  logger.info(
    {
      event: 'keys.rotated',
      targetVersion,
      rotated: report.rotated,
      alreadyCurrent: report.alreadyCurrent,
      undecryptable: report.undecryptable,
      missingVersions: Object.fromEntries(report.missingVersions),
      versionsInUse: report.versionsInUse,
    },
    'stored keys rotated',
  );
  return report;
}

/**
 * Raises MasterKeyMismatchError for the first configured version, newest first, whose stored
 * keys were tried and none decrypted.
 */
async function checkConfiguredKeys(db: Database, keyring: Keyring): Promise<void> {
  for (const version of keyring.versions) {
    const { tried, decrypted } = await sampleVersion(db, keyring, version);
    if (tried === 0 || decrypted) continue;
    throw new MasterKeyMismatchError(
      `Master key version ${version} in MASTER_KEYS decrypts none of the ` +
        `${tried} stored keys tried that use it, so it differs from the key they were ` +
        `encrypted with. Nothing was rotated: set version ${version} to its original key ` +
        'and run "fixwright keys rotate" again. If that key is lost, delete the keys it cannot ' +
        `decrypt with "fixwright keys discard --version ${version}" first.`,
    );
  }
}
