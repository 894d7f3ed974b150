import { eq, inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/env.ts';
import { planChanges, users, type Plan } from '../../src/db/schema/index.ts';
import { applyAllowanceOperation, type OperationResult } from '../../src/usage/allowance-batch.ts';
import { getAllowance, releaseReservation, reserveTokens, settleCall } from '../../src/usage/allowance.ts';
import { rolloverPeriods } from '../../src/jobs/rollover-periods.ts';
import { applyPlanLimits, type ApplyLimitsReport } from '../../src/usage/apply-limits.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { waitFor } from '../helpers/process.ts';

let context: TestContext;
/** The configuration after an operator raised the free limit and lowered nothing else. */
let config: Config;

beforeAll(async () => {
  context = await createTestContext({
    PLAN_FREE_TOKENS: '2000',
    PLAN_PRO_TOKENS: '100000',
    PLAN_ENTERPRISE_TOKENS: '-1',
  });
  config = context.config;
});
afterAll(async () => {
  await context.close();
});
beforeEach(async () => {
  // Each test counts every user in the table, so it starts from none.
  await context.db.delete(users);
});

const periodStart = new Date('2026-11-20T10:00:00Z');

async function createUser(plan: Plan, tokenLimit: number, tokensUsed = 0) {
  const [user] = await context.db
    .insert(users)
    .values({
      login: `limits-${Math.random().toString(36).slice(2, 10)}`,
      plan,
      tokenLimit,
      tokensUsed,
      periodStartedAt: periodStart,
      periodAnchorAt: periodStart,
    })
    .returning();
  return user!;
}

async function readUser(id: string) {
  const [user] = await context.db.select().from(users).where(eq(users.id, id));
  return user!;
}

function readChanges(userId: string) {
  return context.db.select().from(planChanges).where(eq(planChanges.userId, userId));
}

async function reserve(userId: string, tokens: number, key: string): Promise<string> {
  const reservation = await reserveTokens(context.db, { userId, tokens, idempotencyKey: key, ttlSeconds: 600 });
  if (!reservation.ok) throw new Error(reservation.reason);
  return reservation.reservationId;
}

/** Returns tokens_reserved and the sum of the user's live holds, which must be equal. */
async function readHolds(userId: string) {
  const [row] = await context.db.execute<{ reserved: string; holds: string }>(sql`
    SELECT u.tokens_reserved AS reserved,
      (SELECT coalesce(sum(tokens), 0) FROM token_reservations WHERE user_id = u.id) AS holds
    FROM users u WHERE u.id = ${userId}
  `);
  return { reserved: Number(row!.reserved), holds: Number(row!.holds) };
}

/** Returns "fulfilled", or the message of the database error that rejected the promise. */
function describeSettled(result: PromiseSettledResult<unknown>): string {
  if (result.status === 'fulfilled') return 'fulfilled';
  const error = result.reason as { message?: string; cause?: { message?: string } };
  return error.cause?.message ?? error.message ?? String(result.reason);
}

function summaryOf(report: ApplyLimitsReport, plan: Plan) {
  const summary = report.plans.find((entry) => entry.plan === plan);
  if (!summary) throw new Error(`The report has no entry for ${plan}.`);
  return { ...summary, changedFrom: Object.fromEntries(summary.changedFrom) };
}

describe('applyPlanLimits', () => {
  it('gives users on each plan the configured limit', async () => {
    const freeOld = await createUser('free', 1000, 300);
    const freeOlder = await createUser('free', 500, 500);
    const pro = await createUser('pro', 50_000, 690);
    const enterprise = await createUser('enterprise', 200_000, 150_000);

    const report = await applyPlanLimits(context.db, config, context.logger, {
      changedBy: 'cli:operator',
      batchSize: 2,
    });

    expect(report.dryRun).toBe(false);
    expect(report.plans.map((summary) => summary.plan)).toEqual(['free', 'pro', 'enterprise']);
    expect(summaryOf(report, 'free')).toEqual({
      plan: 'free',
      limit: 2000,
      checked: 2,
      changed: 2,
      changedFrom: { 500: 1, 1000: 1 },
      capped: 0,
    });
    expect(summaryOf(report, 'pro')).toMatchObject({ limit: 100_000, checked: 1, changed: 1, changedFrom: { 50000: 1 } });
    expect(summaryOf(report, 'enterprise')).toMatchObject({ limit: -1, checked: 1, changed: 1, capped: 0 });

    const expected: [typeof freeOld, number, number][] = [
      [freeOld, 2000, 300],
      [freeOlder, 2000, 500],
      [pro, 100_000, 690],
      [enterprise, -1, 150_000],
    ];
    for (const [before, limit, used] of expected) {
      const after = await readUser(before.id);
      expect(after.plan).toBe(before.plan);
      expect(after.tokenLimit).toBe(limit);
      expect(after.tokensUsed).toBe(used);
      expect(after.periodStartedAt.toISOString()).toBe(periodStart.toISOString());
      expect(after.periodAnchorAt.toISOString()).toBe(periodStart.toISOString());

      const changes = await readChanges(before.id);
      expect(changes).toHaveLength(1);
      expect(changes[0]).toMatchObject({
        fromPlan: before.plan,
        toPlan: before.plan,
        tokensUsedBefore: used,
        tokensUsedAfter: used,
        changedBy: 'cli:operator',
        reason: 'plan_switch',
      });
    }
  });

  it('leaves users at the configured limit untouched', async () => {
    const current = [
      await createUser('free', 2000, 1200),
      await createUser('pro', 100_000, 5),
      await createUser('enterprise', -1, 70_000),
    ];
    const stale = await createUser('free', 1000, 10);

    const report = await applyPlanLimits(context.db, config, context.logger, { changedBy: 'cli:operator' });

    expect(report.plans.map((summary) => [summary.plan, summary.checked, summary.changed])).toEqual([
      ['free', 2, 1],
      ['pro', 1, 0],
      ['enterprise', 1, 0],
    ]);
    for (const before of current) {
      const after = await readUser(before.id);
      expect(after).toEqual(before);
      expect(await readChanges(before.id)).toHaveLength(0);
    }
    expect((await readUser(stale.id)).tokenLimit).toBe(2000);
  });

  it('changes only the plan given', async () => {
    const free = await createUser('free', 1000);
    const pro = await createUser('pro', 50_000);

    const report = await applyPlanLimits(context.db, config, context.logger, {
      plan: 'pro',
      changedBy: 'cli:operator',
    });

    expect(report.plans).toHaveLength(1);
    expect(summaryOf(report, 'pro')).toMatchObject({ checked: 1, changed: 1, changedFrom: { 50000: 1 } });
    expect((await readUser(pro.id)).tokenLimit).toBe(100_000);
    expect((await readUser(free.id)).tokenLimit).toBe(1000);
    expect(await readChanges(free.id)).toHaveLength(0);
  });

  it('changes nothing in a dry run', async () => {
    const free = await createUser('free', 5000, 4000);
    const pro = await createUser('pro', 50_000, 690);
    const current = await createUser('free', 2000, 10);
    const before = await context.db.select().from(users).orderBy(users.id);

    const report = await applyPlanLimits(context.db, config, context.logger, {
      dryRun: true,
      changedBy: 'cli:operator',
      batchSize: 1,
    });

    expect(report.dryRun).toBe(true);
    expect(summaryOf(report, 'free')).toEqual({
      plan: 'free',
      limit: 2000,
      checked: 2,
      changed: 1,
      changedFrom: { 5000: 1 },
      capped: 1,
    });
    expect(summaryOf(report, 'pro')).toMatchObject({ checked: 1, changed: 1, changedFrom: { 50000: 1 }, capped: 0 });
    expect(await context.db.select().from(users).orderBy(users.id)).toEqual(before);
    const changes = await context.db
      .select()
      .from(planChanges)
      .where(inArray(planChanges.userId, [free.id, pro.id, current.id]));
    expect(changes).toHaveLength(0);
  });

  it('keeps holds made under a higher limit', async () => {
    const user = await createUser('free', 5000, 1500);
    const first = await reserve(user.id, 1000, 'lower-1');
    const second = await reserve(user.id, 800, 'lower-2');

    const report = await applyPlanLimits(context.db, config, context.logger, { changedBy: 'cli:operator' });

    expect(summaryOf(report, 'free')).toMatchObject({ changed: 1, changedFrom: { 5000: 1 }, capped: 0 });
    expect(await getAllowance(context.db, user.id)).toMatchObject({ limit: 2000, used: 1500, reserved: 1800, remaining: 0 });
    expect(await readHolds(user.id)).toEqual({ reserved: 1800, holds: 1800 });
    const [change] = await readChanges(user.id);
    expect(change).toMatchObject({
      tokensUsedBefore: 1500,
      tokensUsedAfter: 1500,
      tokenLimitBefore: 5000,
      tokenLimitAfter: 2000,
    });

    // The reservations made under the old limit already exceed the new one, so nothing more fits.
    const blocked = await reserveTokens(context.db, {
      userId: user.id,
      tokens: 1,
      idempotencyKey: 'lower-blocked',
      ttlSeconds: 60,
    });
    expect(blocked.ok).toBe(false);

    // The first call is charged nothing, because the second's hold takes all the limit leaves.
    const settled = await settleCall(context.db, {
      userId: user.id,
      reservationId: first,
      idempotencyKey: 'lower-1',
      provider: 'groq',
      model: 'm',
      keySource: 'platform',
      usage: { promptTokens: 900, completionTokens: 0, totalTokens: 900 },
    });
    expect(settled.charged).toBe(0);
    expect(await readHolds(user.id)).toEqual({ reserved: 800, holds: 800 });
    expect(await releaseReservation(context.db, second)).toBe(800);
    expect(await getAllowance(context.db, user.id)).toMatchObject({ used: 1500, reserved: 0, remaining: 500 });
    expect(await readHolds(user.id)).toEqual({ reserved: 0, holds: 0 });
  });

  it('caps usage above the new limit', async () => {
    const user = await createUser('pro', 100_000, 40_000);
    const hold = await reserve(user.id, 3000, 'cap-1');
    const lowered = { ...config, PLAN_PRO_TOKENS: 10_000 };

    const report = await applyPlanLimits(context.db, lowered, context.logger, { changedBy: 'cli:operator' });

    expect(summaryOf(report, 'pro')).toMatchObject({ limit: 10_000, changed: 1, changedFrom: { 100000: 1 }, capped: 1 });
    expect(await getAllowance(context.db, user.id)).toMatchObject({ limit: 10_000, used: 10_000, reserved: 3000 });
    expect(await readHolds(user.id)).toEqual({ reserved: 3000, holds: 3000 });
    const [change] = await readChanges(user.id);
    expect(change).toMatchObject({ tokensUsedBefore: 40_000, tokensUsedAfter: 10_000 });

    expect(await releaseReservation(context.db, hold)).toBe(3000);
    expect(await readHolds(user.id)).toEqual({ reserved: 0, holds: 0 });
    expect((await readUser(user.id)).tokensUsed).toBe(10_000);
  });

  it('skips a user who switches plan meanwhile', async () => {
    const user = await createUser('free', 1000);
    let run: Promise<ApplyLimitsReport> | undefined;
    await context.db.transaction(async (tx) => {
      await tx.execute(sql`SELECT 1 FROM users WHERE id = ${user.id} FOR NO KEY UPDATE`);
      run = applyPlanLimits(context.db, config, context.logger, { changedBy: 'cli:operator' });
      // The command read the user as free before it waits here for the row lock.
      await waitFor(
        async () => {
          const [row] = await context.db.execute<{ waiting: number }>(sql`
            SELECT count(*)::int AS waiting FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
          `);
          return row!.waiting > 0;
        },
        { timeoutMs: 10_000, intervalMs: 20, describe: () => 'applyPlanLimits to wait for the row lock' },
      );
      await tx.update(users).set({ plan: 'pro', tokenLimit: 100_000 }).where(eq(users.id, user.id));
    });
    const report = await run!;

    expect(summaryOf(report, 'free')).toMatchObject({ checked: 1, changed: 0 });
    const after = await readUser(user.id);
    expect(after.plan).toBe('pro');
    expect(after.tokenLimit).toBe(100_000);
    expect(await readChanges(user.id)).toHaveLength(0);
  });

  it('keeps committed batches after a failure', async () => {
    const ids = [1, 2, 3, 4, 5].map((n) => `00000000-0000-4000-8000-00000000000${n}`);
    for (const id of ids) {
      await context.db.insert(users).values({ id, login: `batch-${id.slice(-1)}`, tokenLimit: 1000 });
    }
    // The update of the fourth user fails, so its batch (the third and fourth) rolls back.
    await context.db.execute(sql`
      CREATE FUNCTION fail_fourth_user() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'update of batch-4 failed'; END $$
    `);
    await context.db.execute(sql`
      CREATE TRIGGER fail_fourth_user BEFORE UPDATE ON users FOR EACH ROW
        WHEN (NEW.login = 'batch-4') EXECUTE FUNCTION fail_fourth_user()
    `);
    try {
      await expect(
        applyPlanLimits(context.db, config, context.logger, { changedBy: 'cli:operator', batchSize: 2 }),
      ).rejects.toMatchObject({ cause: { message: 'update of batch-4 failed' } });
    } finally {
      await context.db.execute(sql`DROP TRIGGER fail_fourth_user ON users`);
      await context.db.execute(sql`DROP FUNCTION fail_fourth_user`);
    }
    const limitsAfterFailure = await Promise.all(ids.map(async (id) => (await readUser(id)).tokenLimit));
    expect(limitsAfterFailure).toEqual([2000, 2000, 1000, 1000, 1000]);

    const report = await applyPlanLimits(context.db, config, context.logger, { changedBy: 'cli:operator' });

    expect(summaryOf(report, 'free')).toMatchObject({ checked: 5, changed: 3, changedFrom: { 1000: 3 } });
    for (const id of ids) {
      expect((await readUser(id)).tokenLimit).toBe(2000);
      expect(await readChanges(id)).toHaveLength(1);
    }
  });

  it('keeps reservations made after the change within the new limit', async () => {
    const lowered = { ...config, PLAN_FREE_TOKENS: 1000 };
    const userIds: string[] = [];
    for (let index = 0; index < 12; index++) {
      const user = await createUser('free', 5000, index % 3 === 0 ? 700 : 0);
      userIds.push(user.id);
      // Holds taken under the old limit and kept. With their usage of 700, users 3 and 9 hold
      // more than the new limit allows, so each of their reservations after the change fails.
      if (index % 4 > 0) await reserve(user.id, 300 * (index % 4), `before-${index}`);
    }

    const results: OperationResult[] = [];
    let applying = true;
    /** Reserves 150 tokens again and again, then settles 100 of them or releases them. */
    const reserveLoop = async (userId: string, loop: number, settles: boolean) => {
      let afterChange = 0;
      for (let attempt = 0; ; attempt++) {
        const key = `during-${userId}-${loop}-${attempt}`;
        const result = await applyAllowanceOperation(context.db, userId, { kind: 'reserve', tokens: 150, key, ttl: 600 });
        results.push(result);
        if (result.ok && settles) {
          await settleCall(context.db, {
            userId,
            reservationId: result.reservationId,
            idempotencyKey: key,
            provider: 'groq',
            model: 'm',
            keySource: 'platform',
            usage: { promptTokens: 100, completionTokens: 0, totalTokens: 100 },
          });
        } else if (result.ok) {
          await releaseReservation(context.db, result.reservationId!);
        }
        if (!applying && result.limit === 1000 && (!result.ok || ++afterChange >= 5)) return;
      }
    };
    // Users with an even index settle, so their usage grows. The others only release.
    const loops = userIds.flatMap((userId, index) => [
      reserveLoop(userId, 0, index % 2 === 0),
      reserveLoop(userId, 1, index % 2 === 0),
    ]);
    const report = await applyPlanLimits(context.db, lowered, context.logger, {
      changedBy: 'cli:operator',
      batchSize: 5,
    });
    applying = false;
    await Promise.all(loops);

    expect(summaryOf(report, 'free')).toMatchObject({ checked: 12, changed: 12 });
    expect(results.some((result) => result.limit === 5000 && result.ok)).toBe(true);
    const afterChange = results.filter((result) => result.limit === 1000);
    expect(afterChange.some((result) => result.ok)).toBe(true);
    expect(afterChange.some((result) => !result.ok)).toBe(true);
    for (const result of afterChange.filter((entry) => entry.ok)) {
      expect(result.used + result.reserved).toBeLessThanOrEqual(1000);
    }
    for (const userId of userIds) {
      const holds = await readHolds(userId);
      expect(holds.reserved).toBe(holds.holds);
      const user = await readUser(userId);
      expect(user.tokenLimit).toBe(1000);
      expect(user.tokensUsed).toBeLessThanOrEqual(1000);
    }
  });
  it('runs beside a rollover that stores period ends', async () => {
    // The rollover job stores recomputed period ends of many users in one statement, in the
    // order its cursor read them. Here that is the second user first, while this command
    // locks users by id, so the two wait for each other unless both lock in one order.
    const first = '00000000-0000-4000-8000-0000000000a1';
    const second = '00000000-0000-4000-8000-0000000000a2';
    for (const id of [second, first]) {
      await context.db.insert(users).values({
        id,
        login: `rollover-${id.slice(-2)}`,
        tokenLimit: 1000,
        periodStartedAt: periodStart,
        periodAnchorAt: periodStart,
      });
    }
    // The change of the first user waits before its commit, with the first user's row locked,
    // until the rollover has locked the second user's row.
    await context.db.execute(sql`
      CREATE FUNCTION pause_first_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$
    `);
    await context.db.execute(sql`
      CREATE TRIGGER pause_first_change AFTER INSERT ON plan_changes FOR EACH ROW
        WHEN (NEW.user_id = '00000000-0000-4000-8000-0000000000a1'::uuid)
        EXECUTE FUNCTION pause_first_change()
    `);
    try {
      const applying = applyPlanLimits(context.db, config, context.logger, { changedBy: 'cli:operator' });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const rollingOver = rolloverPeriods(context, new Date('2026-11-25T00:00:00Z'));
      const [applied, rolled] = await Promise.allSettled([applying, rollingOver]);

      expect(describeSettled(applied)).toBe('fulfilled');
      expect(describeSettled(rolled)).toBe('fulfilled');
    } finally {
      await context.db.execute(sql`DROP TRIGGER pause_first_change ON plan_changes`);
      await context.db.execute(sql`DROP FUNCTION pause_first_change`);
    }
    for (const id of [first, second]) {
      const user = await readUser(id);
      expect(user.tokenLimit).toBe(2000);
      expect(user.periodEndBillingPeriod).toBe(config.BILLING_PERIOD);
      expect(user.periodEndsAt.toISOString()).toBe('2026-12-20T10:00:00.000Z');
      expect(await readChanges(id)).toHaveLength(1);
    }
  });
  it('shares users between two runs', async () => {
    await context.db.execute(sql`
      INSERT INTO users (login, plan, token_limit, tokens_used)
      SELECT 'twice-' || n, 'free', 1000, 900 FROM generate_series(1, 400) AS n`);
    const dryRun = await applyPlanLimits(context.db, config, context.logger, {
      changedBy: 'cli:operator',
      dryRun: true,
    });

    const options = { changedBy: 'cli:operator', batchSize: 25 };
    const reports = await Promise.all([
      applyPlanLimits(context.db, config, context.logger, options),
      applyPlanLimits(context.db, config, context.logger, options),
    ]);

    expect(summaryOf(dryRun, 'free')).toMatchObject({ checked: 400, changed: 400, changedFrom: { 1000: 400 } });
    const changed = reports.map((report) => summaryOf(report, 'free').changed);
    expect(changed[0]! + changed[1]!).toBe(400);
    const [counts] = await context.db.execute<{ rows: string; users: string; limits: string }>(sql`
      SELECT (SELECT count(*) FROM plan_changes) AS rows,
        (SELECT count(DISTINCT user_id) FROM plan_changes) AS users,
        (SELECT count(*) FROM users WHERE token_limit = 2000) AS limits
    `);
    expect(Number(counts!.rows)).toBe(400);
    expect(Number(counts!.users)).toBe(400);
    expect(Number(counts!.limits)).toBe(400);
  });
});
