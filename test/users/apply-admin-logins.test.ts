import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/env.ts';
import { adminLogins, users } from '../../src/db/schema/index.ts';
import { applyAdminLogins } from '../../src/users/sync-admin-role.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const roleOf = async (id: string) =>
  (await database.db.select({ role: users.role }).from(users).where(eq(users.id, id)))[0]!.role;

describe('applyAdminLogins', () => {
  it('demotes admins no longer listed and promotes listed users', async () => {
    const [former] = await database.db
      .insert(users)
      .values({ login: 'Boss', githubId: 101, role: 'admin' })
      .returning();
    const [listed] = await database.db.insert(users).values({ login: 'Someone-Else', githubId: 102 }).returning();
    await database.db.insert(adminLogins).values([
      { login: 'boss', githubId: 101 },
      { login: 'someone-else', githubId: 102 },
    ]);
    const config = loadConfig({ ADMIN_LOGINS: 'someone-else' });

    expect(await applyAdminLogins(database.db, config)).toBe(2);
    expect(await roleOf(former!.id)).toBe('user');
    expect(await roleOf(listed!.id)).toBe('admin');
    expect(await applyAdminLogins(database.db, config)).toBe(0);
  });

  it('forgets the GitHub ids of logins no longer listed', async () => {
    await database.db.insert(adminLogins).values([
      { login: 'dropped', githubId: 201 },
      { login: 'kept', githubId: 202 },
    ]);

    await applyAdminLogins(database.db, loadConfig({ ADMIN_LOGINS: 'kept,someone-else' }));

    const rows = await database.db.select({ login: adminLogins.login }).from(adminLogins);
    expect(rows.map((row) => row.login).sort()).toEqual(['kept', 'someone-else']);
  });

  it('promotes only the recorded GitHub id', async () => {
    // GitHub id 301 had the login "reused" at its first sign-in, and 302 has it now.
    const [original] = await database.db
      .insert(users)
      .values({ login: 'reused~301', githubId: 301, role: 'admin' })
      .returning();
    const [reuser] = await database.db.insert(users).values({ login: 'Reused', githubId: 302 }).returning();
    const [unbound] = await database.db.insert(users).values({ login: 'not-signed-in', role: 'admin' }).returning();
    await database.db.insert(adminLogins).values({ login: 'reused', githubId: 301 });

    await applyAdminLogins(database.db, loadConfig({ ADMIN_LOGINS: 'reused,not-signed-in' }));

    expect(await roleOf(original!.id)).toBe('user');
    expect(await roleOf(reuser!.id)).toBe('user');
    expect(await roleOf(unbound!.id)).toBe('user');
  });

  it('changes nothing without ADMIN_LOGINS', async () => {
    await database.db.insert(adminLogins).values({ login: 'listed-before', githubId: 601 });
    const before = await database.db.select().from(adminLogins);

    expect(await applyAdminLogins(database.db, loadConfig({}))).toBe(0);

    // A worker started without ADMIN_LOGINS must not forget the recorded accounts.
    expect(await database.db.select().from(adminLogins)).toEqual(before);
  });
});
