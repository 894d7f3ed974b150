import { index, integer, pgTable, primaryKey, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { timestamps } from './columns.ts';
import { providers } from './usage.ts';
import { users } from './users.ts';

/**
 * Why a stored key is unusable: the provider rejected it, or it could not be decrypted. Only
 * the second can heal by itself, when the missing master key is configured again.
 */
export const unusableCauses = ['rejected', 'undecryptable'] as const;
export type UnusableCause = (typeof unusableCauses)[number];

/**
 * A user's own provider key, encrypted with XChaCha20-Poly1305 under a versioned master key.
 * The plain key is never stored; last_four is kept for display.
 */
export const userApiKeys = pgTable(
  'user_api_keys',
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    provider: text({ enum: providers }).notNull(),
    /** base64url of the ciphertext with its 16-byte tag. */
    ciphertext: text().notNull(),
    /** base64url of the 24-byte nonce. */
    nonce: text().notNull(),
    masterKeyVersion: integer().notNull(),
    lastFour: text().notNull(),
    lastUsedAt: timestamp({ withTimezone: true }),
    /** Reason the key cannot be used (decryption failed or the provider rejected it) and the fix. */
    unusableReason: text(),
    unusableCause: text({ enum: unusableCauses }),
    ...timestamps,
  },
  (table) => [unique().on(table.userId, table.provider), index().on(table.masterKeyVersion)],
);

/**
 * A platform key (GROQ_API_KEY or GEMINI_API_KEY) that the provider rejected. A row is matched
 * to the configured key by `key_hash`, the SHA-256 of the key, so a replaced key is used at
 * once and the key itself is never stored. Previews skip a key with a row until `recheck_at`.
 */
export const platformKeyRejections = pgTable(
  'platform_key_rejections',
  {
    provider: text({ enum: providers }).notNull(),
    /** Hex SHA-256 of the key. */
    keyHash: text().notNull(),
    /** HTTP status of the rejection, when the provider sent one. */
    status: integer(),
    rejectedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    /** When the next call may try the key again, to learn whether the provider accepts it. */
    recheckAt: timestamp({ withTimezone: true }).notNull(),
    /**
     * When a caller claimed the re-check that is running, so that callers in other processes
     * wait for its outcome. Null when no re-check is running.
     */
    recheckStartedAt: timestamp({ withTimezone: true }),
  },
  (table) => [primaryKey({ columns: [table.provider, table.keyHash] })],
);
