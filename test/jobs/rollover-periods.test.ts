import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planChanges, users } from '../../src/db/schema/index.ts';
import { rolloverPeriods } from '../../src/jobs/rollover-periods.ts';
import { changePlan, resetUsage } from '../../src/usage/plans.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext({ BILLING_PERIOD: 'monthly' });
});
afterAll(async () => {
  await context.close();
});

async function createUser(values: Partial<typeof users.$inferInsert> = {}) {
  const [user] = await context.db
    .insert(users)
    .values({ login: `rollover-${Math.random().toString(36).slice(2, 10)}`, ...values })
    .returning();
  return user!;
}

async function readUser(id: string) {
  const [user] = await context.db.select().from(users).where(eq(users.id, id));
  return user!;
}

/** Runs the rollover at `now` and returns whether it started a new period for `userId`. */
async function rollAt(userId: string, now: string): Promise<boolean> {
  const before = await readUser(userId);
  await rolloverPeriods(context, new Date(now));
  const after = await readUser(userId);
  return after.periodStartedAt.getTime() !== before.periodStartedAt.getTime();
}

describe('rolloverPeriods with a 31st anchor', () => {
  it('rolls Jan 31 to Feb 28, then Mar 31', async () => {
    const anchor = new Date('2027-01-31T09:30:00Z');
    const user = await createUser({ tokensUsed: 400, periodStartedAt: anchor, periodAnchorAt: anchor });

    expect(await rollAt(user.id, '2027-02-28T09:29:59.999Z')).toBe(false);
    expect(await rollAt(user.id, '2027-02-28T09:30:00Z')).toBe(true);
    const february = await readUser(user.id);
    expect(february.periodStartedAt.toISOString()).toBe('2027-02-28T09:30:00.000Z');
    expect(february.periodAnchorAt.toISOString()).toBe('2027-01-31T09:30:00.000Z');
    expect(february.tokensUsed).toBe(0);

    await context.db.update(users).set({ tokensUsed: 250 }).where(eq(users.id, user.id));
    expect(await rollAt(user.id, '2027-03-28T09:30:00Z')).toBe(false);
    const lateMarch = await readUser(user.id);
    expect(lateMarch.periodStartedAt.toISOString()).toBe('2027-02-28T09:30:00.000Z');
    expect(lateMarch.tokensUsed).toBe(250);

    expect(await rollAt(user.id, '2027-03-31T09:30:00Z')).toBe(true);
    const march = await readUser(user.id);
    expect(march.periodStartedAt.toISOString()).toBe('2027-03-31T09:30:00.000Z');
    expect(march.periodAnchorAt.toISOString()).toBe('2027-01-31T09:30:00.000Z');
    expect(march.tokensUsed).toBe(0);

    expect(await rollAt(user.id, '2027-04-30T09:30:00Z')).toBe(true);
    expect((await readUser(user.id)).periodStartedAt.toISOString()).toBe('2027-04-30T09:30:00.000Z');
    expect(await rollAt(user.id, '2027-05-31T09:30:00Z')).toBe(true);
    expect((await readUser(user.id)).periodStartedAt.toISOString()).toBe('2027-05-31T09:30:00.000Z');

    const changes = await context.db
      .select()
      .from(planChanges)
      .where(eq(planChanges.userId, user.id))
      .orderBy(planChanges.id);
    expect(changes.map((change) => change.reason)).toEqual([
      'period_rollover',
      'period_rollover',
      'period_rollover',
      'period_rollover',
    ]);
    expect(changes.map((change) => change.tokensUsedBefore)).toEqual([400, 250, 0, 0]);
  });

  it('rolls over a period shorter than a day', async () => {
    // 30-day periods from Jan 1 left the start at Mar 31 23:00 before monthly periods began.
    const anchor = new Date('2026-01-01T00:00:00Z');
    const start = new Date('2026-03-31T23:00:00Z');
    const [user] = await context.db
      .insert(users)
      .values({ login: 'short-period', tokensUsed: 700, periodStartedAt: start, periodAnchorAt: anchor })
      .returning();

    await rolloverPeriods(context, new Date('2026-04-01T00:10:00Z'));

    const [after] = await context.db.select().from(users).where(eq(users.id, user!.id));
    expect(after!.periodStartedAt.toISOString()).toBe('2026-04-01T00:00:00.000Z');
    expect(after!.tokensUsed).toBe(0);
  });

  it('starts a late rollover at the last boundary', async () => {
    const anchor = new Date('2028-01-31T00:00:00Z');
    const user = await createUser({ periodStartedAt: anchor, periodAnchorAt: anchor });

    expect(await rollAt(user.id, '2028-05-15T12:00:00Z')).toBe(true);
    const after = await readUser(user.id);
    expect(after.periodStartedAt.toISOString()).toBe('2028-04-30T00:00:00.000Z');
    expect(after.periodAnchorAt.toISOString()).toBe('2028-01-31T00:00:00.000Z');

    expect(await rollAt(user.id, '2028-05-31T00:00:00Z')).toBe(true);
    expect((await readUser(user.id)).periodStartedAt.toISOString()).toBe('2028-05-31T00:00:00.000Z');
  });
});

describe('period anchor', () => {
  it('equals the period start for a new user', async () => {
    const user = await createUser();
    expect(user.periodAnchorAt.getTime()).toBe(user.periodStartedAt.getTime());
  });

  it('moves to the new start on a usage reset', async () => {
    const anchor = new Date('2027-01-31T09:30:00Z');
    const user = await createUser({
      tokensUsed: 300,
      periodStartedAt: new Date('2027-02-28T09:30:00Z'),
      periodAnchorAt: anchor,
    });
    await resetUsage(context.db, context.config, {
      userId: user.id,
      changedBy: 'cli:root',
      reason: 'usage_reset',
    });
    const after = await readUser(user.id);
    expect(after.tokensUsed).toBe(0);
    expect(after.periodAnchorAt.getTime()).toBe(after.periodStartedAt.getTime());
    // The reset starts the period at the database clock's now(), not at a boundary.
    expect(Math.abs(after.periodStartedAt.getTime() - Date.now())).toBeLessThan(60_000);
  });

  it('moves to the new start on a switch to pro', async () => {
    const anchor = new Date('2027-01-31T09:30:00Z');
    const user = await createUser({ periodStartedAt: anchor, periodAnchorAt: anchor });
    await changePlan(context.db, context.config, { userId: user.id, plan: 'pro', changedBy: 'cli:root' });
    const after = await readUser(user.id);
    expect(after.periodAnchorAt.getTime()).toBe(after.periodStartedAt.getTime());
    expect(Math.abs(after.periodStartedAt.getTime() - Date.now())).toBeLessThan(60_000);
  });

  it('stays on a switch to free or enterprise', async () => {
    const anchor = new Date('2027-01-31T09:30:00Z');
    const user = await createUser({
      plan: 'pro',
      tokenLimit: 100_000,
      periodStartedAt: new Date('2027-02-28T09:30:00Z'),
      periodAnchorAt: anchor,
    });
    await changePlan(context.db, context.config, { userId: user.id, plan: 'enterprise', changedBy: 'cli:root' });
    const enterprise = await readUser(user.id);
    expect(enterprise.periodStartedAt.toISOString()).toBe('2027-02-28T09:30:00.000Z');
    expect(enterprise.periodAnchorAt.toISOString()).toBe('2027-01-31T09:30:00.000Z');

    await changePlan(context.db, context.config, { userId: user.id, plan: 'free', changedBy: 'cli:root' });
    const free = await readUser(user.id);
    expect(free.periodStartedAt.toISOString()).toBe('2027-02-28T09:30:00.000Z');
    expect(free.periodAnchorAt.toISOString()).toBe('2027-01-31T09:30:00.000Z');
  });
});
