import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/env.ts';
import { users } from '../../src/db/schema/index.ts';
import { applyAdminLogins } from '../../src/users/sync-admin-role.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe('applyAdminLogins', () => {
  it('demotes admins no longer listed and promotes listed users', async () => {
    const [former] = await database.db.insert(users).values({ login: 'Boss', role: 'admin' }).returning();
    const [listed] = await database.db.insert(users).values({ login: 'Someone-Else' }).returning();
    const config = loadConfig({ ADMIN_LOGINS: 'someone-else' });

    expect(await applyAdminLogins(database.db, config)).toBe(2);
    const roleOf = async (id: string) =>
      (await database.db.select({ role: users.role }).from(users).where(eq(users.id, id)))[0]!.role;
    expect(await roleOf(former!.id)).toBe('user');
    expect(await roleOf(listed!.id)).toBe('admin');
    expect(await applyAdminLogins(database.db, config)).toBe(0);
  });

  it('changes nothing without ADMIN_LOGINS', async () => {
    expect(await applyAdminLogins(database.db, loadConfig({}))).toBe(0);
  });
});
