import { and, asc, eq, sql } from 'drizzle-orm';
import { baseUrlSetting } from '../autofix/provider-client.ts';
import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import { providers, userApiKeys, users, type Provider } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { PostgresRateLimiter } from '../web/session/rate-limiter.ts';
import { encryptUserKey } from './encryption.ts';
import { checkKeyFormat } from './key-format.ts';
import { checkKeyWithProvider } from './key-check.ts';
import type { Keyring } from './master-keys.ts';
import { openStoredKey } from './own-keys.ts';
import { describeUnknownProvider, normalizeProviderOrder, parseProviderOrder } from './provider-order.ts';

/** Displayable facts about a stored key, never the key or its ciphertext. */
export type StoredKeyInfo = {
  provider: Provider;
  lastFour: string;
  createdAt: Date;
  /** When the user last saved the key; a replaced key has updatedAt after createdAt. */
  updatedAt: Date;
  lastUsedAt: Date | null;
  /** Reason previews cannot use the key, with what to do; null while it is usable. */
  unusableReason: string | null;
};

const infoColumns = {
  provider: userApiKeys.provider,
  lastFour: userApiKeys.lastFour,
  createdAt: userApiKeys.createdAt,
  updatedAt: userApiKeys.updatedAt,
  lastUsedAt: userApiKeys.lastUsedAt,
  unusableReason: userApiKeys.unusableReason,
};

/**
 * Lists the user's stored keys, by provider name. A key that is marked unusable, or whose
 * master key version this process lacks or found mismatched, goes through openStoredKey. So
 * the listing shows the reason a preview in this process would get, and clears a mark that no
 * longer applies.
 */
export async function listUserKeys(
  context: { db: Database | Transaction; keyring: Keyring; logger: Logger },
  userId: string,
): Promise<StoredKeyInfo[]> {
  const rows = await context.db
    .select()
    .from(userApiKeys)
    .where(eq(userApiKeys.userId, userId))
    .orderBy(asc(userApiKeys.provider));
  const keys: StoredKeyInfo[] = [];
  for (const row of rows) {
    let unusableReason: string | null = null;
    if (row.unusableCause !== null || !context.keyring.get(row.masterKeyVersion)) {
      const opened = await openStoredKey(context, row);
      unusableReason = opened.usable ? null : opened.reason;
    }
    keys.push({
      provider: row.provider,
      lastFour: row.lastFour,
      createdAt: row.createdAt,
      updatedAt: row.updatedAt,
      lastUsedAt: row.lastUsedAt,
      unusableReason,
    });
  }
  return keys;
}

/** Length of a KEY_CHECK_RATE_LIMIT window, in seconds. */
const keyCheckWindowSeconds = 60 * 60;

/** Reason a key was not saved, with the seconds to wait when the user made too many checks. */
export type SaveKeyFailure =
  | { ok: false; reason: string; cause: 'invalid' | 'rejected' | 'unavailable' }
  | { ok: false; reason: string; cause: 'rate_limited'; retryAfterSeconds: number };

/**
 * Checks a key's format, then with the provider, and stores it encrypted, replacing the
 * user's earlier key for that provider. Nothing is stored when a check fails. Throws
 * KeyringUnavailableError, before calling the provider, when no master key is configured or
 * the newest one did not match the stored keys at start.
 * Each provider check counts against the user's KEY_CHECK_RATE_LIMIT, so that the service
 * cannot be used to try many keys. Past the limit the provider is not called.
 */
export async function saveUserKey(
  context: AppContext,
  input: { userId: string; provider: Provider; key: string },
): Promise<{ ok: true; info: StoredKeyInfo; replaced: boolean } | SaveKeyFailure> {
  const { db, keyring, logger } = context;
  const { userId, provider } = input;
  if (!providers.includes(provider)) {
    return { ok: false, reason: describeUnknownProvider(provider), cause: 'invalid' };
  }
  const format = checkKeyFormat(provider, input.key);
  if (!format.ok) return { ...format, cause: 'invalid' };
  // Fails here, before the provider call, when no master key can encrypt.
  keyring.current();

  const limited = await countKeyCheck(context, input);
  if (limited) return limited;

  const failure = await checkKeyWithProvider(context.config, provider, format.key);
  if (failure !== null) {
    logger.info(
      {
        event: 'user_key.check_failed',
        userId,
        provider,
        reason: failure.reason,
        cause: failure.cause,
        // Null when the default base URL is used.
        baseUrlSetting: baseUrlSetting(context.config, provider) ?? null,
      },
      'key not saved',
    );
    return { ok: false, ...failure };
  }

  const encrypted = await encryptUserKey(keyring, { userId, provider }, format.key);
  const saved = { ...encrypted, lastFour: format.key.slice(-4) };
  const [row] = await db
    .insert(userApiKeys)
    .values({ userId, provider, ...saved })
    .onConflictDoUpdate({
      target: [userApiKeys.userId, userApiKeys.provider],
      set: {
        ...saved,
        lastUsedAt: null,
        unusableReason: null,
        unusableCause: null,
        updatedAt: sql`now()`,
      },
    })
    // An inserted row version has no xmax, and one that ON CONFLICT updated has the
    // transaction ID there. Timestamps cannot tell them apart, because two saves may share one.
    .returning({ ...infoColumns, replaced: sql<boolean>`${userApiKeys}.xmax <> 0` });
  const { replaced, ...info } = row!;
  logger.info(
    {
      event: 'user_key.saved',
      userId,
      provider,
      masterKeyVersion: encrypted.masterKeyVersion,
      replaced,
    },
    'provider key saved',
  );
  return { ok: true, info, replaced };
}

/** Counts one key check of the user and returns the failure past the limit, or null within it. */
async function countKeyCheck(
  context: AppContext,
  input: { userId: string; provider: Provider },
): Promise<SaveKeyFailure | null> {
  const { config, db, logger } = context;
  const limit = config.KEY_CHECK_RATE_LIMIT;
  const limiter = new PostgresRateLimiter(db, 'key-check', limit, keyCheckWindowSeconds);
  const { allowed, retryAfterSeconds } = await limiter.consume(input.userId);
  if (allowed) return null;

  logger.warn(
    { event: 'user_key.rate_limited', userId: input.userId, provider: input.provider, retryAfterSeconds },
    'too many key checks',
  );
  const minutes = Math.ceil(retryAfterSeconds / 60);
  return {
    ok: false,
    reason:
      `Too many key checks: Fixwright checks each key with the provider before saving it, at ` +
      `most ${limit} time${limit === 1 ? '' : 's'} an hour per user. The key was not saved, so ` +
      `wait ${minutes} minute${minutes === 1 ? '' : 's'} and try again.`,
    cause: 'rate_limited',
    retryAfterSeconds,
  };
}

/** Deletes the user's key for the provider; returns false when none was stored. */
export async function deleteUserKey(
  db: Database,
  input: { userId: string; provider: Provider },
): Promise<boolean> {
  const deleted = await db
    .delete(userApiKeys)
    .where(and(eq(userApiKeys.userId, input.userId), eq(userApiKeys.provider, input.provider)))
    .returning({ id: userApiKeys.id });
  return deleted.length > 0;
}

/** Returns the providers to try for the user's previews, first to last. */
export async function getProviderOrder(db: Database | Transaction, userId: string): Promise<Provider[]> {
  const [row] = await db
    .select({ providerOrder: users.providerOrder })
    .from(users)
    .where(eq(users.id, userId));
  if (!row) throw new Error(`User ${userId} not found.`);
  return normalizeProviderOrder(row.providerOrder);
}

/** Stores the user's provider order; throws TypeError unless it lists each provider once. */
export async function setProviderOrder(
  db: Database,
  input: { userId: string; order: Provider[] },
): Promise<void> {
  const parsed = parseProviderOrder(input.order);
  if (!parsed.ok) throw new TypeError(parsed.reason);
  const updated = await db
    .update(users)
    .set({ providerOrder: parsed.order })
    .where(eq(users.id, input.userId))
    .returning({ id: users.id });
  if (updated.length === 0) throw new Error(`User ${input.userId} not found.`);
}
