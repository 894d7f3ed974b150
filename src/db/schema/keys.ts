import { index, integer, pgTable, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
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
