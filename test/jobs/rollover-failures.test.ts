import { eq, sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { users } from '../../src/db/schema/index.ts';
import { rolloverPeriods } from '../../src/jobs/rollover-periods.ts';
import { periodColumns } from '../../src/usage/period.ts';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext({ BILLING_PERIOD: 'monthly' });
});
afterAll(async () => {
  await context.close();
});
beforeEach(async () => {
  await context.db.execute(sql`DROP TRIGGER IF EXISTS fail_one_reset ON users`);
  await context.db.delete(users);
});

async function createDueUser(login: string) {
  const start = new Date('2027-02-01T08:00:00Z');
  const [user] = await context.db
    .insert(users)
    .values({ login, tokensUsed: 400, ...periodColumns(start, start, 'monthly') })
    .returning();
  return user!;
}

async function tokensUsed(id: string) {
  const [user] = await context.db.select().from(users).where(eq(users.id, id));
  return user?.tokensUsed;
}

const now = new Date('2027-03-10T12:00:00Z');

describe('rolloverPeriods when a reset fails', () => {
  it('rolls over the others, then fails the job', async () => {
    const broken = await createDueUser('broken');
    const healthy = await createDueUser('healthy');
    await context.db.execute(sql.raw(`
      CREATE FUNCTION fail_one_reset() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.id = '${broken.id}' THEN RAISE EXCEPTION 'reset refused by the test'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER fail_one_reset BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION fail_one_reset();
    `));
    try {
      await expect(rolloverPeriods(context, now)).rejects.toThrow(
        'Rolling over the billing period failed for 1 user(s)',
      );
    } finally {
      await context.db.execute(sql`DROP TRIGGER fail_one_reset ON users; DROP FUNCTION fail_one_reset()`);
    }
    expect(await tokensUsed(healthy.id)).toBe(0);
    expect(await tokensUsed(broken.id)).toBe(400);
    const failures = logsOf(context, 'job.rollover_periods.user_failed');
    expect(failures.map((line) => line.userId)).toEqual([broken.id]);
  });

  it('skips a user deleted after the job read it', async () => {
    const deleted = await createDueUser('deleted');
    const remaining = await createDueUser('remaining');
    // The deletion holds the row's lock until it commits, so the job's reset of that user
    // waits for it and then finds no row.
    const other = postgres(context.database.url, { max: 1, onnotice: () => {} });
    try {
      const reserved = await other.reserve();
      await reserved`BEGIN`;
      await reserved`DELETE FROM users WHERE id = ${deleted.id}`;
      const rollover = rolloverPeriods(context, now);
      await expect
        .poll(async () => {
          const [row] = await context.db.execute<{ waiting: number }>(sql`
            SELECT count(*)::integer AS waiting FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
          `);
          return row!.waiting;
        })
        .toBe(1);
      await reserved`COMMIT`;
      reserved.release();
      expect(await rollover).toBe(1);
    } finally {
      await other.end();
    }
    expect(await tokensUsed(remaining.id)).toBe(0);
    expect(await tokensUsed(deleted.id)).toBeUndefined();
  });
});
