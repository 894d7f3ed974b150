import os from 'node:os';
import { asc, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { planChanges, users, type Plan } from '../../src/db/schema/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { cliEnv, runCliToExit, spawnCli } from '../helpers/process.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});
beforeEach(async () => {
  // The command counts every user in the table, so each test starts from none.
  await database.db.delete(users);
});

/** Runs `fixwright users apply-limits ARGS` with the free limit raised to 2000. */
function applyLimits(args: string[], env: Record<string, string> = {}) {
  return runCliToExit(['users', 'apply-limits', ...args], {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    NODE_ENV: 'test',
    DATABASE_URL: database.url,
    PLAN_FREE_TOKENS: '2000',
    PLAN_PRO_TOKENS: '100000',
    PLAN_ENTERPRISE_TOKENS: '-1',
    ...env,
  });
}

async function createUser(login: string, plan: Plan, tokenLimit: number, tokensUsed = 0) {
  await database.db.insert(users).values({ login, plan, tokenLimit, tokensUsed });
}

async function readUser(login: string) {
  const [user] = await database.db.select().from(users).where(eq(users.login, login));
  return user!;
}

async function readChanges() {
  return database.db
    .select({ login: users.login, changedBy: planChanges.changedBy, reason: planChanges.reason })
    .from(planChanges)
    .innerJoin(users, eq(users.id, planChanges.userId))
    .orderBy(asc(users.login));
}

async function createStaleUsers() {
  await createUser('free-a', 'free', 1000, 300);
  await createUser('free-b', 'free', 1000, 900);
  await createUser('free-c', 'free', 500, 500);
  await createUser('free-current', 'free', 2000, 1200);
  await createUser('pro-a', 'pro', 50_000, 690);
  await createUser('enterprise-a', 'enterprise', 200_000, 150_000);
}

describe('fixwright users apply-limits', () => {
  it('applies the limits and prints a summary', async () => {
    await createStaleUsers();

    const result = await applyLimits([]);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'free: 3 of 4 users changed to limit 2000 (1 from 500, 2 from 1000).\n' +
        'pro: 1 of 1 user changed to limit 100000 (1 from 50000).\n' +
        'enterprise: 1 of 1 user changed to no limit (1 from 200000).\n' +
        'Checked 6 users; changed 5.\n',
    );
    const expected: [string, number, number][] = [
      ['free-a', 2000, 300],
      ['free-b', 2000, 900],
      ['free-c', 2000, 500],
      ['free-current', 2000, 1200],
      ['pro-a', 100_000, 690],
      ['enterprise-a', -1, 150_000],
    ];
    for (const [login, limit, used] of expected) {
      const user = await readUser(login);
      expect(user.tokenLimit, login).toBe(limit);
      expect(user.tokensUsed, login).toBe(used);
    }
    const changedBy = `cli:${os.userInfo().username}`;
    expect(await readChanges()).toEqual(
      ['enterprise-a', 'free-a', 'free-b', 'free-c', 'pro-a'].map((login) => ({
        login,
        changedBy,
        reason: 'plan_switch',
      })),
    );
  });

  it('changes nothing when run again', async () => {
    await createStaleUsers();
    expect((await applyLimits([])).code).toBe(0);

    const again = await applyLimits([]);

    expect(again.code).toBe(0);
    expect(again.stdout).toBe(
      'free: 0 of 4 users changed; each has limit 2000.\n' +
        'pro: 0 of 1 user changed; each has limit 100000.\n' +
        'enterprise: 0 of 1 user changed; each has no limit.\n' +
        'Checked 6 users; changed 0.\n',
    );
    expect(await readChanges()).toHaveLength(5);
  });

  it('prints what would change in a dry run', async () => {
    await createStaleUsers();
    const before = await database.db.select().from(users).orderBy(asc(users.login));

    const result = await applyLimits(['--dry-run'], { PLAN_FREE_TOKENS: '600' });

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'free: 4 of 4 users would change to limit 600 (1 from 500, 2 from 1000, 1 from 2000). ' +
        'Usage of 2 users would be capped at 600.\n' +
        'pro: 1 of 1 user would change to limit 100000 (1 from 50000).\n' +
        'enterprise: 1 of 1 user would change to no limit (1 from 200000).\n' +
        'Checked 6 users; 6 would change.\n' +
        'Dry run: nothing was changed. Run without --dry-run to apply the limits.\n',
    );
    expect(await database.db.select().from(users).orderBy(asc(users.login))).toEqual(before);
    expect(await readChanges()).toHaveLength(0);
  });

  it('caps usage at a lower limit', async () => {
    await createStaleUsers();

    const result = await applyLimits(['--plan', 'free'], { PLAN_FREE_TOKENS: '600' });

    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'free: 4 of 4 users changed to limit 600 (1 from 500, 2 from 1000, 1 from 2000). ' +
        'Usage of 2 users capped at 600.\n' +
        'Checked 4 users; changed 4.\n',
    );
    expect((await readUser('free-a')).tokensUsed).toBe(300);
    expect((await readUser('free-b')).tokensUsed).toBe(600);
    expect((await readUser('free-c')).tokensUsed).toBe(500);
    expect((await readUser('free-current')).tokensUsed).toBe(600);
  });

  it('checks only the plan given', async () => {
    await createStaleUsers();

    const result = await applyLimits(['--plan', 'pro']);

    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'pro: 1 of 1 user changed to limit 100000 (1 from 50000).\nChecked 1 user; changed 1.\n',
    );
    expect((await readUser('pro-a')).tokenLimit).toBe(100_000);
    expect((await readUser('free-a')).tokenLimit).toBe(1000);
    expect((await readUser('enterprise-a')).tokenLimit).toBe(200_000);
    expect((await readChanges()).map((change) => change.login)).toEqual(['pro-a']);
  });

  it('reports a plan without users', async () => {
    await createUser('free-only', 'free', 1000);

    const result = await applyLimits(['--plan', 'enterprise', '--dry-run']);

    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'enterprise: no users.\n' +
        'Checked 0 users; 0 would change.\n' +
        'Dry run: nothing was changed. Run without --dry-run to apply the limits.\n',
    );
  });

  it('exits 2 for an invalid plan without changes', async () => {
    await createStaleUsers();

    const result = await applyLimits(['--plan', 'gold']);

    expect(result.code).toBe(2);
    expect(result.stderr).toBe('Invalid --plan "gold": use free, pro or enterprise.\n');
    expect(result.stdout).toBe('');
    expect((await readUser('pro-a')).tokenLimit).toBe(50_000);
    expect(await readChanges()).toHaveLength(0);
  });

  it('exits 1 for a missing database', async () => {
    const url = new URL(database.url);
    url.pathname = '/apply_limits_missing_database';

    const result = await applyLimits([], { DATABASE_URL: url.toString() });

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      /^Cannot connect to DATABASE_URL .*: database "apply_limits_missing_database" does not exist/,
    );
  });
});

/**
 * Time limit of the tests that apply thousands of users: about 1.5 ms a user on a quiet
 * machine, several times that while other test files run.
 */
const bulkTimeout = 120_000;

describe('users apply-limits progress', () => {
  it('prints progress per 1,000 users', { timeout: bulkTimeout }, async () => {
    await database.db.execute(sql`
      INSERT INTO users (login, plan, token_limit)
      SELECT 'bulk-' || n, 'free', 1000 FROM generate_series(1, 2500) AS n`);

    const result = await applyLimits([]);

    expect(result.code).toBe(0);
    const progress = result.stderr.split('\n').filter((line) => line.includes('processed so far'));
    expect(progress).toEqual([
      '1000 users with another limit processed so far...',
      '2000 users with another limit processed so far...',
    ]);
    expect(result.stdout).toContain('free: 2500 of 2500 users changed to limit 2000 (2500 from 1000).');
  });
});

describe('users apply-limits interrupted', () => {
  /** Counts the users at the new limit, those still at the old one, and the plan_changes rows. */
  async function readProgress() {
    const [row] = await database.db.execute<{ changed: string; left: string; rows: string; users_with_rows: string }>(sql`
      SELECT
        (SELECT count(*) FROM users WHERE token_limit = 2000) AS changed,
        (SELECT count(*) FROM users WHERE token_limit = 1000) AS left,
        (SELECT count(*) FROM plan_changes) AS rows,
        (SELECT count(DISTINCT user_id) FROM plan_changes) AS users_with_rows
    `);
    return {
      changed: Number(row!.changed),
      left: Number(row!.left),
      rows: Number(row!.rows),
      usersWithRows: Number(row!.users_with_rows),
    };
  }

  const cases = [
    { signal: 'SIGKILL', exit: { code: null, signal: 'SIGKILL' } },
    { signal: 'SIGINT', exit: { code: 130, signal: null } },
  ] as const;
  for (const { signal, exit: expectedExit } of cases) {
    it(`keeps committed batches after ${signal}`, { timeout: bulkTimeout }, async () => {
      await database.db.execute(sql`
        INSERT INTO users (login, plan, token_limit, tokens_used)
        SELECT 'bulk-' || n, 'free', 1000, 500 FROM generate_series(1, 3000) AS n`);
      const command = spawnCli(
        ['users', 'apply-limits'],
        cliEnv({ DATABASE_URL: database.url, PLAN_FREE_TOKENS: '2000' }),
      );
      try {
        await command.waitUntil(
          () => command.output().includes('1000 users with another limit processed so far...'),
          'the command printed its first progress line',
        );
        command.child.kill(signal);
        expect(await command.exit()).toEqual(expectedExit);
      } finally {
        command.kill();
      }

      // Each user is either changed with one plan_changes row, or left as it was.
      const interrupted = await readProgress();
      expect(interrupted.changed + interrupted.left).toBe(3000);
      expect(interrupted.changed).toBeGreaterThanOrEqual(1000);
      expect(interrupted.left).toBeGreaterThan(0);
      expect(interrupted.rows).toBe(interrupted.changed);
      expect(interrupted.usersWithRows).toBe(interrupted.changed);

      const result = await applyLimits([]);

      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`free: ${interrupted.left} of 3000 users changed`);
      const finished = await readProgress();
      expect(finished.changed).toBe(3000);
      expect(finished.rows).toBe(3000);
      expect(finished.usersWithRows).toBe(3000);
    });
  }
});
