import { eq, inArray } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { userApiKeys, users, type Provider } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { decryptUserKey, KeyDecryptionError } from './encryption.ts';
import { lockNextKeys } from './key-batches.ts';
import { sampleVersion } from './master-key-check.ts';
import type { Keyring } from './master-keys.ts';

export interface DiscardReport {
  version: number;
  dryRun: boolean;
  /** Keys of the version that the configured key does not decrypt: deleted, unless a dry run. */
  discarded: { login: string; provider: Provider }[];
  /** Keys of the version that the configured key decrypts; they are kept. */
  kept: number;
}

/** Builds the sentence that explains why there is nothing to discard for `version`. */
export function describeMatchingVersion(version: number): string {
  return (
    `Master key version ${version} decrypts the stored keys that use it, so it is the key they ` +
    'were encrypted with and there is nothing to discard. A key that still fails to decrypt is ' +
    'marked unusable, and its owner can save it again.'
  );
}

/**
 * Raised before anything is deleted, when the configured key of the version decrypts stored
 * keys that use it: it is the key they were encrypted with, so there is nothing to discard.
 */
export class MasterKeyMatchesError extends Error {
  override name = 'MasterKeyMatchesError';
  constructor(readonly version: number) {
    super(`Nothing was deleted. ${describeMatchingVersion(version)}`);
  }
}

/**
 * Deletes the stored keys of `version` that its configured master key does not decrypt, for an
 * operator whose original key of that version is lost. Refuses with MasterKeyMatchesError when
 * the start check would pass, that is when one of the keys it samples decrypts. Rows are
 * checked one by one, `batchSize` per transaction with the rows locked, so a key saved or
 * healed meanwhile is kept. With `dryRun`, reports the same and deletes nothing.
 */
export async function discardUndecryptableKeys(
  db: Database,
  keyring: Keyring,
  logger: Logger,
  options: { version: number; dryRun: boolean; batchSize?: number },
): Promise<DiscardReport> {
  const { version, dryRun } = options;
  const batchSize = options.batchSize ?? 100;
  if (!keyring.get(version)) throw new Error(`Master key version ${version} is not configured.`);
  const { tried, decrypted } = await sampleVersion(db, keyring, version);
  if (decrypted) throw new MasterKeyMatchesError(version);

  const found: { userId: string; provider: Provider }[] = [];
  let kept = 0;
  let afterId: string | null = null;
  while (tried > 0) {
    const lastId: string | null = await db.transaction(async (tx) => {
      const rows = await lockNextKeys(tx, eq(userApiKeys.masterKeyVersion, version), afterId, batchSize);
      const undecryptable: string[] = [];
      for (const row of rows) {
        try {
          await decryptUserKey(keyring, { userId: row.userId, provider: row.provider }, row);
          kept++;
        } catch (error) {
          if (!(error instanceof KeyDecryptionError)) throw error;
          undecryptable.push(row.id);
          found.push({ userId: row.userId, provider: row.provider });
        }
      }
      if (!dryRun && undecryptable.length > 0) {
        await tx.delete(userApiKeys).where(inArray(userApiKeys.id, undecryptable));
      }
      return rows.length === batchSize ? rows.at(-1)!.id : null;
    });
    if (lastId === null) break;
    afterId = lastId;
  }

  const userIds = [...new Set(found.map((key) => key.userId))];
  const logins = new Map<string, string>();
  for (let start = 0; start < userIds.length; start += 1000) {
    const owners = await db
      .select({ id: users.id, login: users.login })
      .from(users)
      .where(inArray(users.id, userIds.slice(start, start + 1000)));
    for (const owner of owners) logins.set(owner.id, owner.login);
  }
  const discarded = found
    .map((key) => ({ login: logins.get(key.userId) ?? key.userId, provider: key.provider }))
    .sort((a, b) => a.login.localeCompare(b.login) || a.provider.localeCompare(b.provider));

  logger.info(
    { event: dryRun ? 'keys.discard_planned' : 'keys.discarded', version, discarded: discarded.length, kept },
    dryRun ? 'stored keys that would be discarded counted' : 'undecryptable stored keys discarded',
  );
  return { version, dryRun, discarded, kept };
}
