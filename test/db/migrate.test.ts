import postgres from 'postgres';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { migrateDatabase, migrationsFolder } from '../../src/db/migrate.ts';

const adminUrl = inject('adminDatabaseUrl');
const name = `migrate_${Date.now()}`;

afterAll(async () => {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

describe('migrateDatabase', () => {
  it('migrates once when processes start together', async () => {
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;

    await Promise.all([1, 2, 3, 4].map(() => migrateDatabase(url.toString())));

    const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
    const applied = await sql`SELECT count(*)::int AS count FROM drizzle.__drizzle_migrations`;
    const tables = await sql`
      SELECT count(*)::int AS count FROM information_schema.tables WHERE table_schema = 'public'
    `;
    await sql.end();
    const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta/_journal.json'), 'utf8'));
    expect(applied[0]!.count).toBe(journal.entries.length);
    expect(tables[0]!.count).toBeGreaterThanOrEqual(12);
  });
});
