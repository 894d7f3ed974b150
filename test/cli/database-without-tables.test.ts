import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrationsFolder } from '../../src/db/migrate.ts';
import { migrationTags } from '../helpers/migrations.ts';
import { cliEnv, runCliToExit } from '../helpers/process.ts';

const adminUrl = inject('adminDatabaseUrl');
const password = new URL(adminUrl).password;
const created: string[] = [];
let folder: string;

/** Creates an empty database and returns its URL, with the test server's password in it. */
async function createDatabase(prefix: string): Promise<string> {
  const name = `${prefix}_${Date.now()}_${created.length}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  created.push(name);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

function runFixwright(args: string[], databaseUrl: string) {
  return runCliToExit(args, cliEnv({ DATABASE_URL: databaseUrl }));
}

/** Lists the schemas and tables in `url` outside PostgreSQL's own schemas. */
async function userObjects(url: string): Promise<string[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql`
      SELECT nspname AS name FROM pg_namespace
      WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')
        AND nspname NOT LIKE 'pg_temp_%' AND nspname NOT LIKE 'pg_toast_temp_%'
      UNION ALL
      SELECT table_schema || '.' || table_name FROM information_schema.tables
      WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
      ORDER BY 1`;
    return rows.map((row) => row.name as string);
  } finally {
    await sql.end();
  }
}

async function countRecordedMigrations(url: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`SELECT count(*)::int AS total FROM drizzle.__drizzle_migrations`;
    return row!.total as number;
  } finally {
    await sql.end();
  }
}

/** Builds the message for a command run on database `name`, which has no Fixwright tables. */
function withoutTables(url: string, name: string): string {
  const masked = url.replace(`:${password}@`, ':***@');
  const { hostname, port } = new URL(url);
  return (
    `DATABASE_URL "${masked}" names the database "${name}" at ${hostname}:${port}, which ` +
    'contains no Fixwright tables, and this command does not create them. Run "fixwright ' +
    'migrate" or "npm start" with this DATABASE_URL first to create them, or correct ' +
    'DATABASE_URL to name the database that Fixwright uses.\n'
  );
}

beforeAll(async () => {
  folder = await mkdtemp(path.join(tmpdir(), 'fixwright-without-tables-'));
});

afterAll(async () => {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    for (const name of created) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
  if (folder) await rm(folder, { recursive: true, force: true });
});

describe('commands on a database without Fixwright tables', () => {
  const commands = [
    ['users', 'show', '--login', 'octocat'],
    ['users', 'token', '--login', 'octocat', '--create'],
    ['users', 'apply-limits', '--dry-run'],
  ];
  for (const args of commands) {
    it(`${args.slice(0, 2).join(' ')} exits 2 and creates nothing`, async () => {
      const url = await createDatabase('no_tables');
      const name = new URL(url).pathname.slice(1);

      const result = await runFixwright(args, url);

      expect(result.code).toBe(2);
      expect(result.stderr).toBe(withoutTables(url, name));
      expect(result.stderr).not.toContain(password);
      expect(result.stdout).toBe('');
      expect(await userObjects(url)).toEqual([]);
    }, 60_000);
  }

  it('migrate creates the tables for the other commands', async () => {
    const url = await createDatabase('migrate_first');

    const migrated = await runFixwright(['migrate'], url);
    const shown = await runFixwright(['users', 'show', '--login', 'octocat'], url);

    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toBe(`Applied ${migrationTags().length} migrations.\n`);
    expect(await countRecordedMigrations(url)).toBe(migrationTags().length);
    expect(shown.code).toBe(1);
    expect(shown.stderr).toMatch(/^User "octocat" not found\./);
  }, 60_000);
});

describe('commands on a database of an older Fixwright', () => {
  it('applies the newer migrations', async () => {
    const url = await createDatabase('older_schema');
    // A copy of the migrations folder whose journal ends two migrations early stands for the
    // older version that migrated the database.
    const olderFolder = path.join(folder, 'migrations');
    await cp(migrationsFolder, olderFolder, { recursive: true });
    const journalFile = path.join(olderFolder, 'meta/_journal.json');
    const journal = JSON.parse(await readFile(journalFile, 'utf8')) as { entries: unknown[] };
    journal.entries = journal.entries.slice(0, -2);
    await writeFile(journalFile, JSON.stringify(journal));
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await migrate(drizzle(sql), { migrationsFolder: olderFolder });
    } finally {
      await sql.end();
    }
    expect(await countRecordedMigrations(url)).toBe(migrationTags().length - 2);

    const shown = await runFixwright(['users', 'show', '--login', 'octocat'], url);

    expect(shown.code).toBe(1);
    expect(shown.stderr).toMatch(/^User "octocat" not found\./);
    expect(await countRecordedMigrations(url)).toBe(migrationTags().length);
  }, 60_000);
});
