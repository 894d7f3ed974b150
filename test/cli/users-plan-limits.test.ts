// The `users` commands that apply plan limits use the limits that the service started with,
// which it records in service_plan_limits, rather than the defaults of a shell without its
// environment. A shell that sets another limit is rejected and changes nothing.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { servicePlanLimits, users } from '../../src/db/schema/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { cliEnv, runCliToExit } from '../helpers/process.ts';
import { startServiceProcess } from '../helpers/service.ts';

let database: TestDatabase;
let recordedAt: string;

beforeAll(async () => {
  database = await createTestDatabase();
  const service = await startServiceProcess({ DATABASE_URL: database.url, PLAN_FREE_TOKENS: '1300' });
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
