import { eq, sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database, Transaction } from '../db/client.ts';
import { planChanges, plans, users, type Plan } from '../db/schema/index.ts';
import { periodColumns } from './period.ts';

/** Raised when the user to change no longer exists, for example after it was deleted. */
export class UserNotFoundError extends Error {
  constructor(readonly userId: string) {
    super(`User ${userId} not found.`);
    this.name = 'UserNotFoundError';
  }
}

/**
 * Locks the user's row for the rest of the transaction and returns its plan, usage and
 * period, and the transaction's start time on the database clock (`now()`).
 */
async function lockUser(tx: Transaction, userId: string) {
  const rows = await tx.execute<{
    plan: Plan;
    tokens_used: string | number;
    token_limit: string | number;
    period_started_at: string | Date;
    period_anchor_at: string | Date;
    now: string | Date;
  }>(sql`
    SELECT plan, tokens_used, token_limit, period_started_at, period_anchor_at, now() AS now
    FROM users WHERE id = ${userId} FOR NO KEY UPDATE
  `);
  const row = rows[0];
  if (!row) throw new UserNotFoundError(userId);
  return row;
}

export function isPlan(value: string): value is Plan {
  return (plans as readonly string[]).includes(value);
}

/** Tokens per period for each plan, from PLAN_FREE_TOKENS, PLAN_PRO_TOKENS, PLAN_ENTERPRISE_TOKENS. */
export function planLimits(config: Config): Record<Plan, number> {
  return {
    free: config.PLAN_FREE_TOKENS,
    pro: config.PLAN_PRO_TOKENS,
    enterprise: config.PLAN_ENTERPRISE_TOKENS,
  };
}

export interface PlanChangeResult {
  /** False when the user was already on the plan with its configured limit. */
  changed: boolean;
  fromPlan: Plan;
  toPlan: Plan;
  /** The user's stored limit before the change, or -1 for unlimited. */
  limitBefore: number;
  limit: number;
  usedBefore: number;
  usedAfter: number;
}

export interface PlanChangeInput {
  userId: string;
  plan: Plan;
  changedBy: string;
  /**
   * Applies only the configured limit of `plan`. When the locked row shows another plan,
   * nothing changes, and the result has `changed: false` with that plan in `fromPlan`.
   */
  limitOnly?: boolean;
}

/** Returns `used` capped at `limit`, or `used` itself when the limit is -1 (unlimited). */
export function capUsage(used: number, limit: number): number {
  return limit >= 0 ? Math.min(used, limit) : used;
}

/**
 * Switches a user's plan and records who did it. Pro resets used to 0 and starts a new period
 * with a new anchor and its end stored. Free and enterprise keep used, capped at the new
 * limit. Reservations in flight stay reserved and settle against the new limit, so no counter
 * goes below zero.
 * Choosing the plan the user is already on resets nothing: it only applies the configured
 * limit when that has changed since.
 */
export async function changePlan(
  db: Database,
  config: Config,
  input: PlanChangeInput,
): Promise<PlanChangeResult> {
  return db.transaction((tx) => changePlanInTransaction(tx, config, input));
}

/**
 * Switches the plan as `changePlan` does, inside a transaction that the caller commits, so the
 * user's row stays locked until the commit.
 */
export async function changePlanInTransaction(
  tx: Transaction,
  config: Config,
  input: PlanChangeInput,
): Promise<PlanChangeResult> {
  const limit = planLimits(config)[input.plan];
  const before = await lockUser(tx, input.userId);
  const limitBefore = Number(before.token_limit);
  const usedBefore = Number(before.tokens_used);
  const samePlan = before.plan === input.plan;
  if ((samePlan && limitBefore === limit) || (input.limitOnly && !samePlan)) {
    const usedAfter = usedBefore;
    return { changed: false, fromPlan: before.plan, toPlan: input.plan, limitBefore, limit, usedBefore, usedAfter };
  }
  const resetUsage = input.plan === 'pro' && !samePlan;
  const usedAfter = capUsage(resetUsage ? 0 : usedBefore, limit);

  const now = new Date(before.now);
  await tx
    .update(users)
    .set({
      plan: input.plan,
      tokenLimit: limit,
      tokensUsed: usedAfter,
      ...(resetUsage ? periodColumns(now, now, config.BILLING_PERIOD) : {}),
      updatedAt: sql`now()`,
    })
    .where(eq(users.id, input.userId));
  await tx.insert(planChanges).values({
    userId: input.userId,
    fromPlan: before.plan,
    toPlan: input.plan,
    tokensUsedBefore: usedBefore,
    tokensUsedAfter: usedAfter,
    tokenLimitBefore: limitBefore,
    tokenLimitAfter: limit,
    changedBy: input.changedBy,
    reason: 'plan_switch',
  });
  return { changed: true, fromPlan: before.plan, toPlan: input.plan, limitBefore, limit, usedBefore, usedAfter };
}

/**
 * Starts a new period for the user: used goes to 0, the period's end under BILLING_PERIOD is
 * stored, and the change is recorded. Tokens reserved by calls in flight stay reserved and
 * settle into the new period. A usage reset also moves the period anchor to the new start, so
 * later monthly periods keep its day of month. A rollover keeps the anchor.
 */
export async function resetUsage(
  db: Database,
  config: Pick<Config, 'BILLING_PERIOD'>,
  input: {
    userId: string;
    changedBy: string;
    reason: 'usage_reset' | 'period_rollover';
    /** Start of the new period; the database clock's now(), to the millisecond, when left out. */
    periodStart?: Date;
    /** Reset only when the period still starts here, so a stale rollover changes nothing. */
    expectedPeriodStart?: Date;
  },
): Promise<{ usedBefore: number; periodEndsAt: Date } | null> {
  return db.transaction(async (tx) => {
    const before = await lockUser(tx, input.userId);
    if (
      input.expectedPeriodStart &&
      new Date(before.period_started_at).getTime() !== input.expectedPeriodStart.getTime()
    ) {
      return null;
    }
    const start = input.periodStart ?? new Date(before.now);
    const anchor = input.reason === 'period_rollover' ? new Date(before.period_anchor_at) : start;
    const period = periodColumns(start, anchor, config.BILLING_PERIOD);
    await tx
      .update(users)
      .set({ tokensUsed: 0, ...period, updatedAt: sql`now()` })
      .where(eq(users.id, input.userId));
    await tx.insert(planChanges).values({
      userId: input.userId,
      fromPlan: before.plan,
      toPlan: before.plan,
      tokensUsedBefore: Number(before.tokens_used),
      tokensUsedAfter: 0,
      tokenLimitBefore: Number(before.token_limit),
      tokenLimitAfter: Number(before.token_limit),
      changedBy: input.changedBy,
      reason: input.reason,
    });
    return { usedBefore: Number(before.tokens_used), periodEndsAt: period.periodEndsAt };
  });
}
