import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { users } from '../../src/db/schema/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

describe('schema constraints', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.close();
  });

  it('rejects tokens_used above a positive limit', async () => {
    const [user] = await database.db
      .insert(users)
      .values({ login: 'limit-check', tokenLimit: 1000 })
      .returning();
    const update = database.db.execute(
      sql`UPDATE users SET tokens_used = 1001 WHERE id = ${user!.id}`,
    );
    await expect(update).rejects.toMatchObject({
      cause: { constraint_name: 'users_tokens_within_limit' },
    });
  });

  it('accepts any usage when the limit is -1', async () => {
    const [user] = await database.db
      .insert(users)
      .values({ login: 'unlimited', tokenLimit: -1, tokensUsed: 5_000_000 })
      .returning();
    expect(user!.tokensUsed).toBe(5_000_000);
  });
});
