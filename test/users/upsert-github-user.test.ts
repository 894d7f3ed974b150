import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { users } from '../../src/db/schema/index.ts';
import { upsertGitHubUser } from '../../src/users/upsert-github-user.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;
const settings = { PLAN_FREE_TOKENS: 1000, BILLING_PERIOD: '30d' };

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

async function loginOf(id: string) {
  const [row] = await database.db.select({ login: users.login }).from(users).where(eq(users.id, id));
  return row!.login;
}

describe('upsertGitHubUser', () => {
  it('gives a reused login to the new account', async () => {
    const old = await upsertGitHubUser(database.db, { id: 10, login: 'foo' }, settings);
    const current = await upsertGitHubUser(database.db, { id: 20, login: 'foo' }, settings);
    expect(current).not.toBe(old);
    expect(await loginOf(current)).toBe('foo');
    expect(await loginOf(old)).toBe('foo~10');
  });

  it('follows a rename onto a login another account held', async () => {
    const holder = await upsertGitHubUser(database.db, { id: 30, login: 'bar' }, settings);
    const renamed = await upsertGitHubUser(database.db, { id: 40, login: 'baz' }, settings);
    expect(await upsertGitHubUser(database.db, { id: 40, login: 'Bar' }, settings)).toBe(renamed);
    expect(await loginOf(renamed)).toBe('Bar');
    expect(await loginOf(holder)).toBe('bar~30');
  });

  it('links a user created by login to its GitHub id', async () => {
    const [manual] = await database.db.insert(users).values({ login: 'cli-made' }).returning();
    const linked = await upsertGitHubUser(database.db, { id: 50, login: 'CLI-made' }, settings);
    expect(linked).toBe(manual!.id);
    const [row] = await database.db.select().from(users).where(eq(users.id, linked));
    expect(row!.githubId).toBe(50);
    expect(row!.periodStartedAt).toEqual(manual!.periodStartedAt);
    expect(row!.periodEndsAt).toEqual(manual!.periodEndsAt);
  });

  it('links an admin created by login as a user', async () => {
    const [manual] = await database.db.insert(users).values({ login: 'login-admin', role: 'admin' }).returning();
    const linked = await upsertGitHubUser(database.db, { id: 55, login: 'login-admin' }, settings);
    expect(linked).toBe(manual!.id);
    const [row] = await database.db.select().from(users).where(eq(users.id, linked));
    expect(row!.role).toBe('user');
  });

  it('stores the period end of a new user', async () => {
    const created = await upsertGitHubUser(database.db, { id: 60, login: 'new-user' }, settings);
    const [row] = await database.db.select().from(users).where(eq(users.id, created));
    expect(Math.abs(row!.periodStartedAt.getTime() - Date.now())).toBeLessThan(60_000);
    expect(row!.periodAnchorAt).toEqual(row!.periodStartedAt);
    expect(row!.periodEndsAt.getTime() - row!.periodStartedAt.getTime()).toBe(30 * 86_400_000);
    expect(row!.periodEndBillingPeriod).toBe('30d');
  });
});
