import { relations, sql } from 'drizzle-orm';
import {
  bigint,
  check,
  index,
  pgTable,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { timestamps } from './columns.ts';
import type { Provider } from './usage.ts';

export const plans = ['free', 'pro', 'enterprise'] as const;
export type Plan = (typeof plans)[number];

export const users = pgTable(
  'users',
  {
    id: uuid().primaryKey().defaultRandom(),
    githubId: bigint({ mode: 'number' }).unique(),
    login: text().notNull().unique(),
    name: text(),
    role: text({ enum: ['user', 'admin'] }).notNull().default('user'),
    plan: text({ enum: plans }).notNull().default('free'),
    /** Tokens allowed per period; -1 means unlimited. */
    tokenLimit: bigint({ mode: 'number' }).notNull().default(1000),
    /** Tokens charged this period, settled from provider-reported usage. */
    tokensUsed: bigint({ mode: 'number' }).notNull().default(0),
    /** Tokens held by reservations of calls still in flight. */
    tokensReserved: bigint({ mode: 'number' }).notNull().default(0),
    periodStartedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    /**
     * Start of the user's first period, last usage reset or last switch to pro. Monthly periods
     * keep its day of month and UTC time of day, and the rollover leaves it alone.
     */
    periodAnchorAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    /**
     * End of the current period, `periodEnd(periodStartedAt, BILLING_PERIOD, periodAnchorAt)`
     * for the BILLING_PERIOD in `periodEndBillingPeriod`. The rollover job finds the users
     * whose period has ended through the index on both columns.
     */
    periodEndsAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    /**
     * BILLING_PERIOD that `periodEndsAt` was computed for. It is '' for a row inserted
     * without its end, and the trigger users_period_end_stale sets '' when an UPDATE moves
     * the start or anchor but not the end. An end computed for another value than the
     * configured one is stale: the rollover job recomputes it, and the usage stats compute
     * the end instead of reading it.
     */
    periodEndBillingPeriod: text().notNull().default(''),
    /** Providers to try for this user's previews, first to last; each provider once. */
    providerOrder: text().array().$type<Provider[]>().notNull().default(['groq', 'gemini']),
    ...timestamps,
  },
  (table) => [
    index('users_period_end_idx').on(table.periodEndBillingPeriod, table.periodEndsAt),
    check('users_tokens_used_nonnegative', sql`${table.tokensUsed} >= 0`),
    check('users_tokens_reserved_nonnegative', sql`${table.tokensReserved} >= 0`),
    check(
      'users_tokens_within_limit',
      sql`${table.tokenLimit} < 0 OR ${table.tokensUsed} <= ${table.tokenLimit}`,
    ),
  ],
);

/**
 * GitHub account of each ADMIN_LOGINS login, recorded at the first sign-in with that login.
 * GitHub lets another account take a login after a rename, so a sign-in with a listed login
 * but another GitHub id gets no admin role.
 */
export const adminLogins = pgTable('admin_logins', {
  /** Login from ADMIN_LOGINS, in lower case. */
  login: text().primaryKey(),
  githubId: bigint({ mode: 'number' }).notNull(),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
});

/**
 * Token limit of each plan that the last service process to start runs with (PLAN_FREE_TOKENS,
 * PLAN_PRO_TOKENS, PLAN_ENTERPRISE_TOKENS), and its BILLING_PERIOD. The `users` commands apply
 * these values, so a shell without the service's environment does not apply the defaults
 * instead.
 */
export const servicePlanLimits = pgTable(
  'service_plan_limits',
  {
    plan: text({ enum: plans }).primaryKey(),
    /** Tokens per period; -1 means unlimited. */
    tokenLimit: bigint({ mode: 'number' }).notNull(),
    /**
     * BILLING_PERIOD of the service, the same in every row because one statement writes them
     * all. Null in rows recorded by a version that did not record it.
     */
    billingPeriod: text(),
    recordedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [check('service_plan_limits_token_limit_valid', sql`${table.tokenLimit} >= -1`)],
);

/** Personal access tokens for the JSON API. Only a SHA-256 hash of the token is stored. */
export const apiTokens = pgTable(
  'api_tokens',
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text().notNull(),
    tokenHash: text().notNull().unique(),
    lastFour: text().notNull(),
    lastUsedAt: timestamp({ withTimezone: true }),
    revokedAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [index().on(table.userId)],
);

export const usersRelations = relations(users, ({ many }) => ({
  apiTokens: many(apiTokens),
}));

export const apiTokensRelations = relations(apiTokens, ({ one }) => ({
  user: one(users, { fields: [apiTokens.userId], references: [users.id] }),
}));
