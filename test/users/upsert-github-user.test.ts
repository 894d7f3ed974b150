import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { users } from '../../src/db/schema/index.ts';
import { upsertGitHubUser } from '../../src/users/upsert-github-user.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;

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
    const old = await upsertGitHubUser(database.db, { id: 10, login: 'foo' }, 1000);
    const current = await upsertGitHubUser(database.db, { id: 20, login: 'foo' }, 1000);
    expect(current).not.toBe(old);
    expect(await loginOf(current)).toBe('foo');
    expect(await loginOf(old)).toBe('foo~10');
  });

  it('follows a rename onto a login another account held', async () => {
    const holder = await upsertGitHubUser(database.db, { id: 30, login: 'bar' }, 1000);
    const renamed = await upsertGitHubUser(database.db, { id: 40, login: 'baz' }, 1000);
    expect(await upsertGitHubUser(database.db, { id: 40, login: 'Bar' }, 1000)).toBe(renamed);
    expect(await loginOf(renamed)).toBe('Bar');
    expect(await loginOf(holder)).toBe('bar~30');
  });

  it('links a user created by login to its GitHub id', async () => {
    const [manual] = await database.db.insert(users).values({ login: 'cli-made' }).returning();
    const linked = await upsertGitHubUser(database.db, { id: 50, login: 'CLI-made' }, 1000);
    expect(linked).toBe(manual!.id);
    const [row] = await database.db.select().from(users).where(eq(users.id, linked));
    expect(row!.githubId).toBe(50);
  });
});
