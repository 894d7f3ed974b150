import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runUsersCommand } from '../../src/cli/users.ts';
import { loadConfig } from '../../src/config/env.ts';
import { users } from '../../src/db/schema/index.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs `fixwright users ARGS` in this process against the test database with 14-day periods. */
async function runUsers(args: string[]): Promise<string[]> {
  const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: database.url, BILLING_PERIOD: '14d' });
  const output: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((line: unknown) => void output.push(String(line)));
  vi.spyOn(console, 'error').mockImplementation(() => {});
  expect(await runUsersCommand(config, createLogger('silent'), args)).toBe(0);
  return output;
}

async function readUser(login: string) {
  const [user] = await database.db.select().from(users).where(eq(users.login, login));
  return user!;
}

describe('fixwright users and period ends', () => {
  it('token stores the end of a new user', async () => {
    await runUsers(['token', '--login', 'period-cli', '--create']);
    const user = await readUser('period-cli');
    expect(user.periodAnchorAt).toEqual(user.periodStartedAt);
    expect(user.periodEndsAt.getTime() - user.periodStartedAt.getTime()).toBe(14 * 86_400_000);
    expect(user.periodEndBillingPeriod).toBe('14d');
  });

  it('reset-usage stores and prints the new end', async () => {
    await database.db
      .update(users)
      .set({
        tokensUsed: 300,
        periodStartedAt: new Date('2026-01-01T00:00:00Z'),
        periodAnchorAt: new Date('2026-01-01T00:00:00Z'),
        periodEndsAt: new Date('2026-01-15T00:00:00Z'),
        periodEndBillingPeriod: '14d',
      })
      .where(eq(users.login, 'period-cli'));

    const output = await runUsers(['reset-usage', '--login', 'period-cli']);

    const user = await readUser('period-cli');
    expect(user.tokensUsed).toBe(0);
    expect(Math.abs(user.periodStartedAt.getTime() - Date.now())).toBeLessThan(60_000);
    expect(user.periodEndsAt.getTime() - user.periodStartedAt.getTime()).toBe(14 * 86_400_000);
    expect(user.periodEndBillingPeriod).toBe('14d');
    expect(output).toEqual([
      `period-cli: used 300 -> 0; a new period starts now and ends ${user.periodEndsAt.toISOString()}.`,
    ]);
  });
});
