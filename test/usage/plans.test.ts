import { asc, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planChanges, tokenEvents, users } from '../../src/db/schema/index.ts';
import { rolloverPeriods } from '../../src/jobs/rollover-periods.ts';
import { getAllowance, reserveTokens, settleCall } from '../../src/usage/allowance.ts';
import { changePlan, resetUsage } from '../../src/usage/plans.ts';
import { periodColumns, periodEnd } from '../../src/usage/period.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext({ PLAN_PRO_TOKENS: '100000', PLAN_FREE_TOKENS: '1000' });
});
afterAll(async () => {
  await context.close();
});

async function createUser(values: Partial<typeof users.$inferInsert> = {}) {
  const [user] = await context.db
    .insert(users)
    .values({ login: `plan-${Math.random().toString(36).slice(2, 10)}`, ...values })
    .returning();
  return user!;
}

async function reserve(userId: string, tokens: number, key: string) {
  const reservation = await reserveTokens(context.db, {
    userId,
    tokens,
    idempotencyKey: key,
    ttlSeconds: 600,
  });
  if (!reservation.ok) throw new Error(reservation.reason);
  return reservation.reservationId;
}

function settle(userId: string, reservationId: string, key: string, total: number) {
  return settleCall(context.db, {
    userId,
    reservationId,
    idempotencyKey: key,
    provider: 'groq',
    model: 'm',
    keySource: 'platform',
    usage: { promptTokens: total, completionTokens: 0, totalTokens: total },
  });
}

describe('changePlan', () => {
  it('switches to pro: limit 100000, used reset to 0', async () => {
    const user = await createUser({ tokensUsed: 800 });
    const result = await changePlan(context.db, context.config, {
      userId: user.id,
      plan: 'pro',
      changedBy: 'admin-login',
    });
    expect(result).toEqual({
      changed: true,
      fromPlan: 'free',
      toPlan: 'pro',
      limitBefore: 1000,
      limit: 100_000,
      usedBefore: 800,
      usedAfter: 0,
    });
    const state = await getAllowance(context.db, user.id);
    expect(state).toMatchObject({ plan: 'pro', limit: 100_000, used: 0 });
    const [change] = await context.db.select().from(planChanges).where(eq(planChanges.userId, user.id));
    expect(change).toMatchObject({
      fromPlan: 'free',
      toPlan: 'pro',
      tokensUsedBefore: 800,
      tokensUsedAfter: 0,
      tokenLimitBefore: 1000,
      tokenLimitAfter: 100_000,
      changedBy: 'admin-login',
      reason: 'plan_switch',
    });
  });

  it('switches to enterprise: unlimited, used kept', async () => {
    const user = await createUser({ plan: 'pro', tokenLimit: 100_000, tokensUsed: 50_000 });
    const result = await changePlan(context.db, context.config, {
      userId: user.id,
      plan: 'enterprise',
      changedBy: 'cli:root',
    });
    expect(result).toMatchObject({ limit: -1, usedAfter: 50_000 });
    expect((await getAllowance(context.db, user.id)).remaining).toBe(Number.POSITIVE_INFINITY);
  });

  it('switches to free: limit 1000, used capped at the limit', async () => {
    const user = await createUser({ plan: 'pro', tokenLimit: 100_000, tokensUsed: 42_000 });
    const result = await changePlan(context.db, context.config, {
      userId: user.id,
      plan: 'free',
      changedBy: 'cli:root',
    });
    expect(result).toMatchObject({ limit: 1000, usedBefore: 42_000, usedAfter: 1000 });
    const state = await getAllowance(context.db, user.id);
    expect(state).toMatchObject({ plan: 'free', used: 1000, remaining: 0 });
  });

  it('changes nothing when the user is already on the plan', async () => {
    const started = new Date('2026-11-20T10:00:00Z');
    const user = await createUser({
      plan: 'pro',
      tokenLimit: 100_000,
      tokensUsed: 690,
      periodStartedAt: started,
      periodAnchorAt: started,
    });
    const result = await changePlan(context.db, context.config, { userId: user.id, plan: 'pro', changedBy: 'x' });
    expect(result).toMatchObject({ changed: false, usedBefore: 690, usedAfter: 690 });
    const [after] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(after!.tokensUsed).toBe(690);
    expect(after!.periodStartedAt.toISOString()).toBe(started.toISOString());
    const changes = await context.db.select().from(planChanges).where(eq(planChanges.userId, user.id));
    expect(changes).toHaveLength(0);
  });

  it('applies a changed limit of the same plan without a reset', async () => {
    const user = await createUser({ plan: 'pro', tokenLimit: 50_000, tokensUsed: 690 });
    const result = await changePlan(context.db, context.config, { userId: user.id, plan: 'pro', changedBy: 'x' });
    expect(result).toMatchObject({ changed: true, limit: 100_000, usedBefore: 690, usedAfter: 690 });
    expect(await getAllowance(context.db, user.id)).toMatchObject({ limit: 100_000, used: 690 });
  });

  it('changes only the limit with limitOnly', async () => {
    const user = await createUser({ plan: 'pro', tokenLimit: 50_000, tokensUsed: 690 });

    const other = await changePlan(context.db, context.config, {
      userId: user.id,
      plan: 'free',
      changedBy: 'x',
      limitOnly: true,
    });
    expect(other).toEqual({
      changed: false,
      fromPlan: 'pro',
      toPlan: 'free',
      limitBefore: 50_000,
      limit: 1000,
      usedBefore: 690,
      usedAfter: 690,
    });
    expect(await getAllowance(context.db, user.id)).toMatchObject({ plan: 'pro', limit: 50_000, used: 690 });
    expect(await context.db.select().from(planChanges).where(eq(planChanges.userId, user.id))).toHaveLength(0);

    const same = await changePlan(context.db, context.config, {
      userId: user.id,
      plan: 'pro',
      changedBy: 'x',
      limitOnly: true,
    });
    expect(same).toMatchObject({ changed: true, limitBefore: 50_000, limit: 100_000, usedAfter: 690 });
    expect(await getAllowance(context.db, user.id)).toMatchObject({ plan: 'pro', limit: 100_000, used: 690 });
  });

  it('keeps counters valid when switching during reservations', async () => {
    const user = await createUser({ plan: 'pro', tokenLimit: 100_000, tokensUsed: 900 });
    const first = await reserve(user.id, 5000, 'flight-1');
    const second = await reserve(user.id, 3000, 'flight-2');

    await changePlan(context.db, context.config, { userId: user.id, plan: 'free', changedBy: 'x' });
    const during = await getAllowance(context.db, user.id);
    expect(during).toMatchObject({ used: 900, reserved: 8000, remaining: 0 });
    expect(
      (await reserveTokens(context.db, { userId: user.id, tokens: 1, idempotencyKey: 'blocked', ttlSeconds: 60 })).ok,
    ).toBe(false);

    // The second call's hold of 3000 leaves the first nothing under the new limit; the
    // second is then charged the 100 that remain.
    const settledFirst = await settle(user.id, first, 'flight-1', 4000);
    expect(settledFirst.charged).toBe(0);
    await settle(user.id, second, 'flight-2', 2500);
    const after = await getAllowance(context.db, user.id);
    expect(after).toMatchObject({ used: 1000, reserved: 0 });

    const events = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, user.id));
    expect(events.map((event) => event.chargedTokens).sort()).toEqual([0, 100]);
  });
});

describe('plan_changes order', () => {
  it('times a change by its insert, not its transaction start', async () => {
    const user = await createUser();
    await context.db.transaction(async (tx) => {
      // This transaction starts first but takes the user's row lock after the switch below,
      // as a switch whose BEGIN wins the race but whose lock loses it would.
      await tx.execute(sql`SELECT 1`);
      await changePlan(context.db, context.config, { userId: user.id, plan: 'pro', changedBy: 'first-lock' });
      await tx.execute(sql`SELECT 1 FROM users WHERE id = ${user.id} FOR NO KEY UPDATE`);
      await tx.insert(planChanges).values({
        userId: user.id,
        fromPlan: 'pro',
        toPlan: 'free',
        tokensUsedBefore: 0,
        tokensUsedAfter: 0,
        changedBy: 'second-lock',
        reason: 'plan_switch',
      });
    });

    const rows = await context.db
      .select()
      .from(planChanges)
      .where(eq(planChanges.userId, user.id))
      .orderBy(asc(planChanges.createdAt));
    expect(rows.map((row) => row.changedBy)).toEqual(['first-lock', 'second-lock']);
    // Compared in SQL, because a Date keeps milliseconds and the two inserts can fall within one.
    const [order] = await context.db.execute<{ later: boolean }>(sql`
      SELECT (SELECT created_at FROM plan_changes WHERE user_id = ${user.id} AND changed_by = 'second-lock')
        > (SELECT created_at FROM plan_changes WHERE user_id = ${user.id} AND changed_by = 'first-lock')
        AS later
    `);
    expect(order!.later).toBe(true);
  });
});

describe('billing periods', () => {
  it('resets usage by hand while reservations are in flight', async () => {
    const user = await createUser({ tokensUsed: 600 });
    const reservation = await reserve(user.id, 300, 'reset-flight');
    await resetUsage(context.db, context.config, {
      userId: user.id,
      changedBy: 'cli:root',
      reason: 'usage_reset',
    });
    expect(await getAllowance(context.db, user.id)).toMatchObject({ used: 0, reserved: 300 });

    await settle(user.id, reservation, 'reset-flight', 200);
    expect(await getAllowance(context.db, user.id)).toMatchObject({ used: 200, reserved: 0 });
  });

  it('rolls over ended periods at the period boundary', async () => {
    const started = new Date('2026-10-15T08:00:00Z');
    const due = await createUser({ tokensUsed: 700, periodStartedAt: started, periodAnchorAt: started });
    const fresh = await createUser({ tokensUsed: 300 });
    const now = new Date('2026-12-20T00:00:00Z');

    const rolled = await rolloverPeriods(context, now);
    expect(rolled).toBeGreaterThanOrEqual(1);
    const [afterDue] = await context.db.select().from(users).where(eq(users.id, due.id));
    expect(afterDue!.tokensUsed).toBe(0);
    // Two months passed; the new period starts at the last boundary, not at the job's time.
    expect(afterDue!.periodStartedAt.toISOString()).toBe('2026-12-15T08:00:00.000Z');
    const [afterFresh] = await context.db.select().from(users).where(eq(users.id, fresh.id));
    expect(afterFresh!.tokensUsed).toBe(300);
    const [change] = await context.db.select().from(planChanges).where(eq(planChanges.userId, due.id));
    expect(change).toMatchObject({
      reason: 'period_rollover',
      changedBy: 'system',
      tokensUsedBefore: 700,
      tokenLimitBefore: 1000,
      tokenLimitAfter: 1000,
    });

    expect(await rolloverPeriods(context, now)).toBe(0);
  });

  it('stores the new period end on a usage reset', async () => {
    const anchor = new Date('2027-01-31T09:30:00Z');
    const user = await createUser({ tokensUsed: 600, ...periodColumns(anchor, anchor, 'monthly') });
    expect(user.periodEndsAt.toISOString()).toBe('2027-02-28T09:30:00.000Z');

    const result = await resetUsage(context.db, context.config, {
      userId: user.id,
      changedBy: 'cli:root',
      reason: 'usage_reset',
    });

    const [after] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(Math.abs(after!.periodStartedAt.getTime() - Date.now())).toBeLessThan(60_000);
    const expectedEnd = periodEnd(after!.periodStartedAt, 'monthly', after!.periodStartedAt);
    expect(after!.periodEndsAt.toISOString()).toBe(expectedEnd.toISOString());
    expect(after!.periodEndBillingPeriod).toBe('monthly');
    expect(result!.periodEndsAt.toISOString()).toBe(expectedEnd.toISOString());
  });

  it('stores the end under the given BILLING_PERIOD', async () => {
    const user = await createUser({ tokensUsed: 600 });
    await resetUsage(context.db, { BILLING_PERIOD: '7d' }, {
      userId: user.id,
      changedBy: 'cli:root',
      reason: 'usage_reset',
    });
    const [after] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(after!.periodEndsAt.getTime() - after!.periodStartedAt.getTime()).toBe(7 * 86_400_000);
    expect(after!.periodEndBillingPeriod).toBe('7d');
  });

  it('stores the new period end on a switch to pro', async () => {
    const anchor = new Date('2027-01-31T09:30:00Z');
    const user = await createUser({ ...periodColumns(anchor, anchor, 'monthly') });

    await changePlan(context.db, context.config, { userId: user.id, plan: 'pro', changedBy: 'x' });

    const [after] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(Math.abs(after!.periodStartedAt.getTime() - Date.now())).toBeLessThan(60_000);
    const expectedEnd = periodEnd(after!.periodStartedAt, 'monthly', after!.periodStartedAt);
    expect(after!.periodEndsAt.toISOString()).toBe(expectedEnd.toISOString());
    expect(after!.periodEndBillingPeriod).toBe('monthly');
  });

  it('keeps the period end on a switch to free', async () => {
    const anchor = new Date('2027-01-31T09:30:00Z');
    const user = await createUser({ plan: 'pro', tokenLimit: 100_000, ...periodColumns(anchor, anchor, 'monthly') });

    await changePlan(context.db, context.config, { userId: user.id, plan: 'free', changedBy: 'x' });

    const [after] = await context.db.select().from(users).where(eq(users.id, user.id));
    expect(after!.plan).toBe('free');
    expect(after!.periodStartedAt.toISOString()).toBe('2027-01-31T09:30:00.000Z');
    expect(after!.periodEndsAt.toISOString()).toBe('2027-02-28T09:30:00.000Z');
    expect(after!.periodEndBillingPeriod).toBe('monthly');
  });

  it('computes monthly period ends in UTC, clamped to short months', () => {
    const january = new Date('2026-01-31T10:00:00Z');
    const december = new Date('2026-12-04T00:00:00Z');
    expect(periodEnd(january, 'monthly', january).toISOString()).toBe('2026-02-28T10:00:00.000Z');
    expect(periodEnd(december, 'monthly', december).toISOString()).toBe('2027-01-04T00:00:00.000Z');
    expect(periodEnd(december, '7d', december).toISOString()).toBe('2026-12-11T00:00:00.000Z');
  });
});
