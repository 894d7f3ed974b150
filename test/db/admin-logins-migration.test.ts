import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyMigration,
  createEmptyDatabase,
  migrationTags,
  type EmptyDatabase,
} from '../helpers/migrations.ts';

let database: EmptyDatabase;
let sql: postgres.Sql;

beforeAll(async () => {
  database = await createEmptyDatabase('admin_logins', 'UTC');
  sql = database.sql;
});

afterAll(async () => {
  await database?.drop();
});

describe('admin_logins backfill migration', () => {
  it('records the GitHub id of each admin', async () => {
    const tags = migrationTags();
    const backfillIndex = tags.findIndex((tag) => tag.endsWith('_backfill_admin_logins'));
    expect(backfillIndex).toBeGreaterThan(0);
    for (const tag of tags.slice(0, backfillIndex)) await applyMigration(sql, tag);

    await sql`
      INSERT INTO users (login, github_id, role) VALUES
        ('Octo-Admin', 101, 'admin'),
        ('recorded-admin', 102, 'admin'),
        ('plain-user', 103, 'user'),
        ('cli-admin', NULL, 'admin')
    `;
    // Recorded by a sign-in before the upgrade, for another account: the record stays.
    await sql`INSERT INTO admin_logins (login, github_id) VALUES ('recorded-admin', 999)`;

    await applyMigration(sql, tags[backfillIndex]!);

    const rows = await sql<{ login: string; github_id: string }[]>`
      SELECT login, github_id::text FROM admin_logins ORDER BY login
    `;
    expect(rows.map((row) => [row.login, row.github_id])).toEqual([
      ['octo-admin', '101'],
      ['recorded-admin', '999'],
    ]);
  });
});
