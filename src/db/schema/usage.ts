import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  check,
  index,
  integer,
  pgTable,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { patchRequests } from './patches.ts';
import { plans, users } from './users.ts';

export const providers = ['groq', 'gemini'] as const;
export type Provider = (typeof providers)[number];

export const keySources = ['platform', 'user'] as const;
export type KeySource = (typeof keySources)[number];

/**
 * The ledger: one row per model call. For each user, the sum of charged_tokens of the rows
 * tagged with the user's current period_started_at equals users.tokens_used, except after a
 * switch to a smaller plan, which caps tokens_used and records the cut in plan_changes.
 */
export const tokenEvents = pgTable(
  'token_events',
  {
    id: bigserial({ mode: 'number' }).primaryKey(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    patchRequestId: uuid().references(() => patchRequests.id, { onDelete: 'set null' }),
    path: text(),
    provider: text({ enum: providers }).notNull(),
    model: text().notNull(),
    keySource: text({ enum: keySources }).notNull(),
    promptTokens: integer().notNull(),
    completionTokens: integer().notNull(),
    totalTokens: integer().notNull(),
    /** Tokens added to users.tokens_used; 0 for calls on the user's own key. */
    chargedTokens: integer().notNull(),
    /**
     * The provider's own counts when the three counts above are an estimate, because the
     * provider's were missing (0 here) or below what the prompt and output can take, a maximum,
     * or the call's hold, because checking the provider's counts failed. Null when the counts
     * above are the provider's, and on rows written before these columns.
     */
    reportedPromptTokens: integer(),
    reportedCompletionTokens: integer(),
    reportedTotalTokens: integer(),
    /** The user's period_started_at when the call was settled: the period it was billed to. */
    periodStartedAt: timestamp({ withTimezone: true }),
    /** The reservation this call settled, released in the same transaction. */
    reservationId: uuid(),
    /** Patch request, file and attempt; settling the same call twice records it once. */
    idempotencyKey: text().notNull().unique(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [index().on(table.userId, table.createdAt), index().on(table.patchRequestId)],
);

/**
 * Tokens held for a model call in flight. A row past expires_at is released by the sweeper,
 * so a worker that dies between reserve and settle holds nothing for ever.
 */
export const tokenReservations = pgTable(
  'token_reservations',
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tokens: bigint({ mode: 'number' }).notNull(),
    idempotencyKey: text().notNull(),
    expiresAt: timestamp({ withTimezone: true }).notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    index().on(table.expiresAt),
    index().on(table.userId),
    check('token_reservations_tokens_positive', sql`${table.tokens} > 0`),
  ],
);

/** Every plan switch and usage reset, with who made it. */
export const planChanges = pgTable(
  'plan_changes',
  {
    id: bigserial({ mode: 'number' }).primaryKey(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    fromPlan: text({ enum: plans }),
    toPlan: text({ enum: plans }).notNull(),
    tokensUsedBefore: bigint({ mode: 'number' }).notNull(),
    tokensUsedAfter: bigint({ mode: 'number' }).notNull(),
    /** Stored limit before the change (-1 unlimited); null on rows written before this column. */
    tokenLimitBefore: bigint({ mode: 'number' }),
    /** Stored limit after the change (-1 unlimited); null on rows written before this column. */
    tokenLimitAfter: bigint({ mode: 'number' }),
    /** Login of the user or "cli:<os user>" / "system" that made the change. */
    changedBy: text().notNull(),
    reason: text({ enum: ['plan_switch', 'usage_reset', 'period_rollover'] }).notNull(),
    /**
     * Time of the insert, which follows the lock on the user's row. now() would be the start
     * of the transaction, so a change that waited for that lock could sort before the change
     * it waited for.
     */
    createdAt: timestamp({ withTimezone: true }).notNull().default(sql`clock_timestamp()`),
  },
  (table) => [index().on(table.userId)],
);
