// The `users` commands that apply plan limits or compute period ends use the limits and
// BILLING_PERIOD that the service started with, which it records in service_plan_limits, rather
// than the defaults of a shell without its environment. A shell that sets another value is
// rejected and changes nothing.
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { servicePlanLimits, users } from '../../src/db/schema/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { cliEnv, runCliToExit } from '../helpers/process.ts';
import { startServiceProcess } from '../helpers/service.ts';

let database: TestDatabase;
let recordedAt: string;

beforeAll(async () => {
  database = await createTestDatabase();
  const service = await startServiceProcess({
    DATABASE_URL: database.url,
    PLAN_FREE_TOKENS: '1300',
    BILLING_PERIOD: '14d',
  });
  await service.stop('SIGTERM');
  const [free] = await database.db.select().from(servicePlanLimits).where(eq(servicePlanLimits.plan, 'free'));
  recordedAt = free!.recordedAt.toISOString();
}, 60_000);

afterAll(async () => {
  await database.close();
});

function runUsers(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCliToExit(['users', ...args], cliEnv({ DATABASE_URL: database.url, ...env }));
}

async function readUser(login: string) {
  const [user] = await database.db.select().from(users).where(eq(users.login, login));
  return user!;
}

describe('service plan limits', () => {
  it('records the limits at start', async () => {
    const rows = await database.db
      .select({ plan: servicePlanLimits.plan, tokenLimit: servicePlanLimits.tokenLimit })
      .from(servicePlanLimits)
      .orderBy(servicePlanLimits.tokenLimit);
    expect(rows).toEqual([
      { plan: 'enterprise', tokenLimit: -1 },
      { plan: 'free', tokenLimit: 1300 },
      { plan: 'pro', tokenLimit: 100_000 },
    ]);
  });

  it('applies the recorded limit when the shell sets none', async () => {
    await database.db.insert(users).values({ login: 'Codertocat', plan: 'pro', tokenLimit: 100_000 });

    const result = await runUsers(['plan', '--login', 'codertocat', '--plan', 'free']);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('Codertocat: pro -> free, limit 1300, used 0 -> 0\n');
    expect((await readUser('Codertocat')).tokenLimit).toBe(1300);
  });

  it('rejects a shell limit that differs', async () => {
    await database.db.insert(users).values({ login: 'hubot', plan: 'pro', tokenLimit: 100_000 });

    const result = await runUsers(['plan', '--login', 'hubot', '--plan', 'free'], { PLAN_FREE_TOKENS: '1000' });

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `PLAN_FREE_TOKENS is 1000 here, but the service started at ${recordedAt} with 1300. ` +
        "Nothing was changed. Set the same value as the service, or unset it to use the service's, " +
        'or restart the service with the new value first, so that it records that value.\n',
    );
    const user = await readUser('hubot');
    expect(user.plan).toBe('pro');
    expect(user.tokenLimit).toBe(100_000);
  });

  it('accepts a shell limit that matches', async () => {
    await database.db.insert(users).values({ login: 'monalisa', plan: 'pro', tokenLimit: 100_000 });

    const result = await runUsers(['plan', '--login', 'monalisa', '--plan', 'free'], { PLAN_FREE_TOKENS: '1300' });

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((await readUser('monalisa')).tokenLimit).toBe(1300);
  });

  it('applies recorded limits in apply-limits', async () => {
    await database.db.insert(users).values({ login: 'stale-free', plan: 'free', tokenLimit: 1000 });

    const result = await runUsers(['apply-limits', '--plan', 'free']);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('(1 from 1000)');
    expect((await readUser('stale-free')).tokenLimit).toBe(1300);
  });

  it('rejects apply-limits with another limit', async () => {
    await database.db.insert(users).values({ login: 'stale-pro', plan: 'pro', tokenLimit: 5 });

    const result = await runUsers(['apply-limits'], { PLAN_PRO_TOKENS: '200000' });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^PLAN_PRO_TOKENS is 200000 here, but the service started at \S+ with 100000\./);
    expect((await readUser('stale-pro')).tokenLimit).toBe(5);
  });

  it('creates users with the recorded free limit', async () => {
    const result = await runUsers(['token', '--login', 'new-user', '--create']);

    expect(result.code).toBe(0);
    expect((await readUser('new-user')).tokenLimit).toBe(1300);
  });
});

const fourteenDays = 14 * 86_400_000;

/** Reads the user and checks that its stored period end was computed for `billingPeriod`. */
async function expectStoredPeriod(login: string, billingPeriod: string, length: number) {
  const user = await readUser(login);
  expect(user.periodEndBillingPeriod).toBe(billingPeriod);
  expect(user.periodEndsAt.getTime() - user.periodStartedAt.getTime()).toBe(length);
  return user;
}

describe('service billing period', () => {
  it('records BILLING_PERIOD at start', async () => {
    const rows = await database.db.select({ billingPeriod: servicePlanLimits.billingPeriod }).from(servicePlanLimits);
    expect(rows).toEqual([{ billingPeriod: '14d' }, { billingPeriod: '14d' }, { billingPeriod: '14d' }]);
  });

  it('reset-usage stores the recorded period end', async () => {
    await database.db.insert(users).values({ login: 'reset-recorded', tokensUsed: 40 });

    const result = await runUsers(['reset-usage', '--login', 'reset-recorded']);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const user = await expectStoredPeriod('reset-recorded', '14d', fourteenDays);
    expect(user.tokensUsed).toBe(0);
    expect(result.stdout).toBe(
      `reset-recorded: used 40 -> 0; a new period starts now and ends ${user.periodEndsAt.toISOString()}.\n`,
    );
  });

  it('reset-usage rejects another shell BILLING_PERIOD', async () => {
    const start = new Date('2026-11-20T08:00:00.000Z');
    await database.db.insert(users).values({
      login: 'reset-mismatch',
      tokensUsed: 40,
      periodStartedAt: start,
      periodAnchorAt: start,
      periodEndsAt: new Date(start.getTime() + fourteenDays),
      periodEndBillingPeriod: '14d',
    });

    const result = await runUsers(['reset-usage', '--login', 'reset-mismatch'], { BILLING_PERIOD: 'monthly' });

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `BILLING_PERIOD is monthly here, but the service started at ${recordedAt} with 14d. ` +
        "Nothing was changed. Set the same value as the service, or unset it to use the service's, " +
        'or restart the service with the new value first, so that it records that value.\n',
    );
    const user = await readUser('reset-mismatch');
    expect(user.tokensUsed).toBe(40);
    expect(user.periodStartedAt).toEqual(start);
    expect(user.periodEndsAt).toEqual(new Date('2026-12-04T08:00:00.000Z'));
  });

  it('reset-usage accepts a matching shell BILLING_PERIOD', async () => {
    await database.db.insert(users).values({ login: 'reset-match', tokensUsed: 40 });

    const result = await runUsers(['reset-usage', '--login', 'reset-match'], { BILLING_PERIOD: '14d' });

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    await expectStoredPeriod('reset-match', '14d', fourteenDays);
  });

  it('plan pro stores the recorded period end', async () => {
    await database.db.insert(users).values({ login: 'to-pro', plan: 'free', tokenLimit: 1300 });

    const result = await runUsers(['plan', '--login', 'to-pro', '--plan', 'pro']);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const user = await expectStoredPeriod('to-pro', '14d', fourteenDays);
    expect(user.plan).toBe('pro');
  });

  it('plan rejects another shell BILLING_PERIOD', async () => {
    await database.db.insert(users).values({ login: 'to-pro-mismatch', plan: 'free', tokenLimit: 1300 });

    const result = await runUsers(['plan', '--login', 'to-pro-mismatch', '--plan', 'pro'], { BILLING_PERIOD: '30d' });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^BILLING_PERIOD is 30d here, but the service started at \S+ with 14d\./);
    const user = await readUser('to-pro-mismatch');
    expect(user.plan).toBe('free');
    expect(user.periodEndBillingPeriod).toBe('');
  });

  it('token --create stores the recorded period end', async () => {
    const result = await runUsers(['token', '--login', 'created-14d', '--create']);

    expect(result.code).toBe(0);
    await expectStoredPeriod('created-14d', '14d', fourteenDays);
  });

  it('show computes the end for the recorded period', async () => {
    const start = new Date('2026-11-20T08:00:00.000Z');
    // A stored end computed for another BILLING_PERIOD, which the rollover job has not yet recomputed.
    await database.db.insert(users).values({
      login: 'show-stale',
      periodStartedAt: start,
      periodAnchorAt: start,
      periodEndsAt: new Date('2026-12-20T08:00:00.000Z'),
      periodEndBillingPeriod: 'monthly',
    });

    const result = await runUsers(['show', '--login', 'show-stale']);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).periodEnd).toBe('2026-12-04T08:00:00.000Z');
  });

  it('uses the shell value when none was recorded', async () => {
    // A service of a version that did not record BILLING_PERIOD leaves the column null.
    await database.db.execute(sql`UPDATE service_plan_limits SET billing_period = NULL`);
    try {
      await database.db.insert(users).values({ login: 'reset-unrecorded', tokensUsed: 40 });

      const result = await runUsers(['reset-usage', '--login', 'reset-unrecorded'], { BILLING_PERIOD: '30d' });

      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      await expectStoredPeriod('reset-unrecorded', '30d', 30 * 86_400_000);
    } finally {
      await database.db.execute(sql`UPDATE service_plan_limits SET billing_period = '14d'`);
    }
  });
});
