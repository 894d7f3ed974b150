import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runUsersCommand } from '../../src/cli/users.ts';
import { loadConfig } from '../../src/config/env.ts';
import { adminLogins, users } from '../../src/db/schema/index.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { cliEnv, runCliToExit } from '../helpers/process.ts';

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

/** Runs `fixwright users reset-admin --login LOGIN` in this process and returns its output. */
async function resetAdmin(login: string, listedLogins = 'boss,nobody-recorded'): Promise<string[]> {
  const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: database.url, ADMIN_LOGINS: listedLogins });
  const output: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((line: unknown) => void output.push(String(line)));
  expect(await runUsersCommand(config, createLogger('silent'), ['reset-admin', '--login', login])).toBe(0);
  return output;
}

async function roleOf(githubId: number) {
  const [row] = await database.db.select({ role: users.role }).from(users).where(eq(users.githubId, githubId));
  return row!.role;
}

describe('fixwright users reset-admin', () => {
  it('deletes the recorded GitHub id', async () => {
    await database.db.insert(users).values([
      { login: 'boss~401', githubId: 401, role: 'admin' },
      { login: 'boss', githubId: 402 },
    ]);
    await database.db.insert(adminLogins).values({ login: 'boss', githubId: 401 });

    const output = await resetAdmin('Boss');

    expect(output).toEqual([
      'Deleted GitHub id 401 recorded for Boss. While Boss is in ADMIN_LOGINS, the next sign-in ' +
        'with it records its GitHub id and gets the admin role.',
    ]);
    expect(await database.db.select().from(adminLogins).where(eq(adminLogins.login, 'boss'))).toEqual([]);
    expect(await roleOf(401)).toBe('user');
    expect(await roleOf(402)).toBe('user');
  });

  it('keeps an admin recorded under another login', async () => {
    await database.db.insert(users).values({ login: 'chief', githubId: 501, role: 'admin' });
    await database.db.insert(adminLogins).values([
      { login: 'old-chief', githubId: 501 },
      { login: 'chief', githubId: 501 },
    ]);

    await resetAdmin('old-chief');

    expect(await roleOf(501)).toBe('admin');
    const rows = await database.db.select({ login: adminLogins.login }).from(adminLogins);
    expect(rows.map((row) => row.login)).toContain('chief');
    expect(rows.map((row) => row.login)).not.toContain('old-chief');
  });

  it('reports a login without a recorded id', async () => {
    expect(await resetAdmin('nobody-recorded')).toEqual([
      'No GitHub id is recorded for nobody-recorded, so the next sign-in with it records one.',
    ]);
  });

  it('reports a login not in ADMIN_LOGINS', async () => {
    expect(await resetAdmin('Stranger')).toEqual([
      'No GitHub id is recorded for Stranger, and ADMIN_LOGINS does not list it, so a sign-in ' +
        'with it gets the user role. To make it an admin, add it to ADMIN_LOGINS and restart.',
    ]);
  });

});

describe('fixwright users reset-admin without ADMIN_LOGINS', () => {
  const unset = "ADMIN_LOGINS is unset in this command's environment, and without it";

  beforeEach(async () => {
    await database.db.delete(adminLogins);
    await database.db.delete(users);
  });

  it('keeps the first admin admin', async () => {
    // The first sign-in without ADMIN_LOGINS made this account admin.
    await database.db.insert(users).values({ login: 'Codertocat', githubId: 601, role: 'admin' });

    const result = await runCliToExit(
      ['users', 'reset-admin', '--login', 'codertocat'],
      cliEnv({ DATABASE_URL: database.url }),
      { timeoutMs: 30_000 },
    );

    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `No GitHub id is recorded for codertocat, so nothing was deleted. ${unset} a sign-in ` +
        "keeps the user's role. codertocat is admin and stays admin when it signs in again.\n",
    );
    expect(result.stderr).toBe('');
    expect(await roleOf(601)).toBe('admin');
  });

  it('reports a login without admin', async () => {
    await database.db.insert(users).values([
      { login: 'Codertocat', githubId: 601, role: 'admin' },
      { login: 'octocat', githubId: 602 },
    ]);

    expect(await resetAdmin('octocat', '')).toEqual([
      `No GitHub id is recorded for octocat, so nothing was deleted. ${unset} a sign-in keeps ` +
        "the user's role while another user is admin, so a sign-in with octocat gets the user " +
        'role. To make it an admin, add it to ADMIN_LOGINS with the logins of the other admins, ' +
        'and restart.',
    ]);
    expect(await roleOf(602)).toBe('user');
  });

  it('reports that no user is admin', async () => {
    await database.db.insert(users).values({ login: 'octocat', githubId: 602 });

    expect(await resetAdmin('Stranger', '')).toEqual([
      `No GitHub id is recorded for Stranger, so nothing was deleted. ${unset} the first GitHub ` +
        'account to sign in while no user is admin becomes admin. No user is admin now, so the ' +
        'next sign-in makes its account admin, whatever its login.',
    ]);
  });

  it('deletes an id recorded before', async () => {
    // Recorded while ADMIN_LOGINS listed boss. A start without the list keeps it.
    await database.db.insert(users).values({ login: 'boss', githubId: 701, role: 'admin' });
    await database.db.insert(adminLogins).values({ login: 'boss', githubId: 701 });

    expect(await resetAdmin('boss', '')).toEqual([
      `Deleted GitHub id 701 recorded for boss. ${unset} the first GitHub account to sign in ` +
        'while no user is admin becomes admin. No user is admin now, so the next sign-in makes ' +
        'its account admin, whatever its login.',
    ]);
    expect(await roleOf(701)).toBe('user');
    expect(await database.db.select().from(adminLogins)).toEqual([]);
  });
});
