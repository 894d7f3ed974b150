import { eq, inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planChanges, users } from '../../src/db/schema/index.ts';
import { rolloverBatchSize, rolloverPeriods } from '../../src/jobs/rollover-periods.ts';
import { periodColumns } from '../../src/usage/period.ts';
import { getUsageStats } from '../../src/usage/stats.ts';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext({ BILLING_PERIOD: 'monthly' });
});
afterAll(async () => {
  await context.close();
});

/** Returns the test context with another BILLING_PERIOD, as after a restart with a new setting. */
function withBillingPeriod(billingPeriod: string) {
  return { ...context, config: { ...context.config, BILLING_PERIOD: billingPeriod } };
}

/** Inserts a user whose period starts at `start`, with the end stored for `billingPeriod`. */
async function createUser(
  start: string,
  billingPeriod: string,
  values: Partial<typeof users.$inferInsert> = {},
) {
  const [user] = await context.db
    .insert(users)
    .values({
      login: `due-${Math.random().toString(36).slice(2, 10)}`,
      ...periodColumns(new Date(start), new Date(start), billingPeriod),
      ...values,
    })
    .returning();
  return user!;
}

async function readUser(id: string) {
  const [user] = await context.db.select().from(users).where(eq(users.id, id));
  return user!;
}

describe('rolloverPeriods with stored period ends', () => {
  it('rolls over only users whose end passed', async () => {
    const due = await createUser('2027-02-01T08:00:00Z', 'monthly', { tokensUsed: 500 });
    const notDue = await createUser('2027-03-01T09:00:00Z', 'monthly', { tokensUsed: 300 });
    // By its start, this period ended on Feb 5, but its stored end is Jun 1. The job reads
    // users by the stored end, so it never reads this one.
    const notRead = await createUser('2027-01-05T00:00:00Z', 'monthly', {
      tokensUsed: 200,
      periodEndsAt: new Date('2027-06-01T00:00:00Z'),
    });

    const rolled = await rolloverPeriods(context, new Date('2027-03-10T12:00:00Z'));

    expect(rolled).toBe(1);
    const afterDue = await readUser(due.id);
    expect(afterDue.tokensUsed).toBe(0);
    expect(afterDue.periodStartedAt.toISOString()).toBe('2027-03-01T08:00:00.000Z');
    expect(afterDue.periodAnchorAt.toISOString()).toBe('2027-02-01T08:00:00.000Z');
    expect(afterDue.periodEndsAt.toISOString()).toBe('2027-04-01T08:00:00.000Z');
    expect(afterDue.periodEndBillingPeriod).toBe('monthly');
    expect(await readUser(notDue.id)).toEqual(notDue);
    expect(await readUser(notRead.id)).toEqual(notRead);

    const changes = await context.db
      .select()
      .from(planChanges)
      .where(inArray(planChanges.userId, [due.id, notDue.id, notRead.id]));
    expect(changes.map((change) => change.userId)).toEqual([due.id]);
    expect(changes[0]!.reason).toBe('period_rollover');
  });

  it('rolls over when the stored end is reached', async () => {
    const user = await createUser('2027-04-10T06:00:00Z', 'monthly');
    await rolloverPeriods(context, new Date('2027-05-10T05:59:59.999Z'));
    expect((await readUser(user.id)).periodStartedAt.toISOString()).toBe('2027-04-10T06:00:00.000Z');

    await rolloverPeriods(context, new Date('2027-05-10T06:00:00Z'));
    const after = await readUser(user.id);
    expect(after.periodStartedAt.toISOString()).toBe('2027-05-10T06:00:00.000Z');
    expect(after.periodEndsAt.toISOString()).toBe('2027-06-10T06:00:00.000Z');
  });

  it('computes the end of a row inserted without one', async () => {
    const [user] = await context.db
      .insert(users)
      .values({
        login: 'inserted-without-end',
        tokensUsed: 40,
        periodStartedAt: new Date('2027-07-31T10:00:00Z'),
        periodAnchorAt: new Date('2027-07-31T10:00:00Z'),
      })
      .returning();
    expect(user!.periodEndBillingPeriod).toBe('');

    await rolloverPeriods(context, new Date('2027-08-15T00:00:00Z'));
    const after = await readUser(user!.id);
    expect(after.periodEndsAt.toISOString()).toBe('2027-08-31T10:00:00.000Z');
    expect(after.periodEndBillingPeriod).toBe('monthly');
    expect(after.tokensUsed).toBe(40);
  });

  it('recomputes the end after a start moved by hand', async () => {
    const user = await createUser('2027-09-01T00:00:00Z', 'monthly', { tokensUsed: 70 });
    await context.db.execute(sql`
      UPDATE users SET period_started_at = '2027-09-20T00:00:00Z', period_anchor_at = '2027-09-20T00:00:00Z'
      WHERE id = ${user.id}
    `);
    const moved = await readUser(user.id);
    expect(moved.periodEndBillingPeriod).toBe('');
    const stats = await getUsageStats(context.db, context.config, user.id);
    expect(stats.periodEnd).toBe('2027-10-20T00:00:00.000Z');

    // The old end (Oct 1) has passed, but the period that started on Sep 20 has not ended.
    await rolloverPeriods(context, new Date('2027-10-05T00:00:00Z'));
    const after = await readUser(user.id);
    expect(after.tokensUsed).toBe(70);
    expect(after.periodStartedAt.toISOString()).toBe('2027-09-20T00:00:00.000Z');
    expect(after.periodEndsAt.toISOString()).toBe('2027-10-20T00:00:00.000Z');
    expect(after.periodEndBillingPeriod).toBe('monthly');
  });
});

describe('rolloverPeriods after BILLING_PERIOD changed', () => {
  it('rolls over at once a user whose new period ended', async () => {
    const user = await createUser('2028-03-01T00:00:00Z', 'monthly', { tokensUsed: 900 });
    const weekly = withBillingPeriod('7d');

    await rolloverPeriods(weekly, new Date('2028-03-20T00:00:00Z'));

    // Seven-day boundaries from Mar 1 are Mar 8, 15 and 22: the period started on Mar 15.
    const after = await readUser(user.id);
    expect(after.tokensUsed).toBe(0);
    expect(after.periodStartedAt.toISOString()).toBe('2028-03-15T00:00:00.000Z');
    expect(after.periodEndsAt.toISOString()).toBe('2028-03-22T00:00:00.000Z');
    expect(after.periodEndBillingPeriod).toBe('7d');
  });

  it('stores the new end of a period not ended', async () => {
    const user = await createUser('2028-04-18T00:00:00Z', 'monthly', { tokensUsed: 120 });
    const weekly = withBillingPeriod('7d');
    const before = await getUsageStats(weekly.db, weekly.config, user.id);
    expect(before.periodEnd).toBe('2028-04-25T00:00:00.000Z');

    await rolloverPeriods(weekly, new Date('2028-04-20T00:00:00Z'));

    const after = await readUser(user.id);
    expect(after.tokensUsed).toBe(120);
    expect(after.periodStartedAt.toISOString()).toBe('2028-04-18T00:00:00.000Z');
    expect(after.periodEndsAt.toISOString()).toBe('2028-04-25T00:00:00.000Z');
    expect(after.periodEndBillingPeriod).toBe('7d');
    const stats = await getUsageStats(weekly.db, weekly.config, user.id);
    expect(stats.periodEnd).toBe(before.periodEnd);
  });

  it('does not roll over on an older, shorter end', async () => {
    // Stored under 7d: the end is May 8, which has passed. Under monthly it is Jun 1.
    const user = await createUser('2028-05-01T00:00:00Z', '7d', { tokensUsed: 650 });
    expect(user.periodEndsAt.toISOString()).toBe('2028-05-08T00:00:00.000Z');

    await rolloverPeriods(context, new Date('2028-05-10T00:00:00Z'));

    const after = await readUser(user.id);
    expect(after.tokensUsed).toBe(650);
    expect(after.periodStartedAt.toISOString()).toBe('2028-05-01T00:00:00.000Z');
    expect(after.periodEndsAt.toISOString()).toBe('2028-06-01T00:00:00.000Z');
    expect(after.periodEndBillingPeriod).toBe('monthly');
  });

  it('rolls over a first period shorter than a day', async () => {
    // 30-day periods from Jan 1 left the start at Mar 31 23:00, and monthly periods end on
    // the 1st at midnight: the first monthly period lasts one hour.
    const user = await createUser('2026-03-31T23:00:00Z', '30d', {
      tokensUsed: 700,
      periodAnchorAt: new Date('2026-01-01T00:00:00Z'),
    });
    expect(user.periodEndsAt.toISOString()).toBe('2026-04-30T23:00:00.000Z');

    await rolloverPeriods(context, new Date('2026-04-01T00:10:00Z'));

    const after = await readUser(user.id);
    expect(after.tokensUsed).toBe(0);
    expect(after.periodStartedAt.toISOString()).toBe('2026-04-01T00:00:00.000Z');
    expect(after.periodEndsAt.toISOString()).toBe('2026-05-01T00:00:00.000Z');
    expect(after.periodEndBillingPeriod).toBe('monthly');
  });
});

describe('rolloverPeriods with many stale ends', () => {
  // A database of its own, so that no user of the other tests is due.
  let own: TestContext;
  beforeAll(async () => {
    own = await createTestContext({ BILLING_PERIOD: '30d' });
  });
  afterAll(async () => {
    await own.close();
  });

  it('recomputes more users than one batch', async () => {
    const count = rolloverBatchSize * 2 + 500;
    await own.db.execute(sql`
      INSERT INTO users (login, period_started_at, period_anchor_at, period_ends_at, period_end_billing_period)
      SELECT 'batch-' || i, start, start, start + interval '1 month', 'monthly'
      FROM generate_series(1, ${count}) AS i,
        LATERAL (SELECT '2029-01-01T00:00:00Z'::timestamptz + make_interval(mins => i) AS start) AS s
    `);

    expect(await rolloverPeriods(own, new Date('2029-01-10T00:00:00Z'))).toBe(0);

    const [stale] = await own.db.execute<{ count: number }>(sql`
      SELECT count(*)::int AS count FROM users
      WHERE period_end_billing_period <> '30d' OR period_ends_at <> period_started_at + interval '30 days'
    `);
    expect(stale!.count).toBe(0);
    const recomputed = logsOf(own, 'job.period_ends_recomputed').map((line) => line.users);
    expect(recomputed).toEqual([count]);
  });
});

describe('getUsageStats', () => {
  it('reports the stored end while it is current', async () => {
    // The stored end differs from the computed one (Feb 28), which shows which one is read.
    const user = await createUser('2030-01-31T12:00:00Z', 'monthly', {
      periodEndsAt: new Date('2030-02-27T12:00:00Z'),
    });
    const stats = await getUsageStats(context.db, context.config, user.id);
    expect(stats.periodStart).toBe('2030-01-31T12:00:00.000Z');
    expect(stats.periodEnd).toBe('2030-02-27T12:00:00.000Z');

    const weekly = withBillingPeriod('7d');
    const weeklyStats = await getUsageStats(weekly.db, weekly.config, user.id);
    expect(weeklyStats.periodEnd).toBe('2030-02-07T12:00:00.000Z');
  });
});
