import postgres from 'postgres';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { migrateDatabase, migrationsFolder } from '../../src/db/migrate.ts';
import { StartupError } from '../../src/errors/startup-error.ts';
import { cliEnv, runCli, runCliToExit } from '../helpers/process.ts';

const adminUrl = inject('adminDatabaseUrl');
const name = `migrate_${Date.now()}`;
const created: string[] = [name];

/** Creates an empty database and returns its URL. */
async function emptyDatabase(database: string): Promise<string> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${database}`);
  await admin.end();
  created.push(database);
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Records a migration dated after every migration of this version, as a newer version would. */
async function recordNewerMigration(url: string): Promise<void> {
  const newest = Math.max(...readMigrationFiles({ migrationsFolder }).map((file) => file.folderMillis));
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  await sql`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('from-a-newer-version', ${newest + 60_000})`;
  await sql.end();
}

const limitedRole = `migrate_limited_${Date.now()}`;
const restoringRole = `migrate_owner_${Date.now()}`;

afterAll(async () => {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  for (const database of created) await admin.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.unsafe(`DROP ROLE IF EXISTS ${limitedRole}`);
  await admin.unsafe(`DROP ROLE IF EXISTS ${restoringRole}`);
  await admin.end();
});

/** Returns the error that `migrateDatabase(url)` rejects with. */
async function migrationFailure(url: string): Promise<Error> {
  try {
    await migrateDatabase(url);
  } catch (error) {
    return error as Error;
  }
  throw new Error('the migration succeeded');
}

describe('migrateDatabase', () => {
  it('migrates once when processes start together', async () => {
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;

    const outcomes = await Promise.all([1, 2, 3, 4].map(() => migrateDatabase(url.toString())));

    const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
    const applied = await sql`SELECT count(*)::int AS count FROM drizzle.__drizzle_migrations`;
    const tables = await sql`
      SELECT count(*)::int AS count FROM information_schema.tables WHERE table_schema = 'public'
    `;
    await sql.end();
    const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta/_journal.json'), 'utf8'));
    expect(applied[0]!.count).toBe(journal.entries.length);
    expect(outcomes.reduce((sum, outcome) => sum + outcome.applied, 0)).toBe(journal.entries.length);
    expect(tables[0]!.count).toBeGreaterThanOrEqual(12);
  });

  it('counts applied and newer migrations', async () => {
    const url = await emptyDatabase(`${name}_count`);
    const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta/_journal.json'), 'utf8'));

    const first = await migrateDatabase(url);
    expect(first.applied).toBe(journal.entries.length);
    expect(first.newerInDatabase).toBe(0);

    const second = await migrateDatabase(url);
    expect(second.applied).toBe(0);
    expect(second.newerInDatabase).toBe(0);

    await recordNewerMigration(url);
    const third = await migrateDatabase(url);
    expect(third.applied).toBe(0);
    expect(third.newerInDatabase).toBe(1);
  });
});

describe('fixwright migrate', () => {
  it('prints what it applied', async () => {
    const url = await emptyDatabase(`${name}_cli`);
    const env = cliEnv({ DATABASE_URL: url });
    const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta/_journal.json'), 'utf8'));

    const first = await runCli(['migrate'], env);
    expect(first.stdout).toBe(`Applied ${journal.entries.length} migrations.\n`);

    const second = await runCli(['migrate'], env);
    expect(second.stdout).toBe('No migration to apply: the database is up to date.\n');
    expect(second.stderr).not.toContain('database.schema_newer');
  }, 60_000);

  it('warns about a schema from a newer version', async () => {
    const url = await emptyDatabase(`${name}_newer`);
    const env = cliEnv({ DATABASE_URL: url });
    await runCli(['migrate'], env);
    await recordNewerMigration(url);

    const { stdout, stderr } = await runCli(['migrate'], env);
    expect(stdout).toBe('No migration to apply: a newer Fixwright version migrated the database.\n');
    const warnings = stderr
      .split('\n')
      .filter((line) => line.includes('"event":"database.schema_newer"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.newerMigrations).toBe(1);
    expect(warnings[0]!.msg).toContain('1 migration(s) newer than this Fixwright version');
  }, 60_000);
});

describe('migration failures', () => {
  it('names tables made outside the migrations', async () => {
    const url = await emptyDatabase(`${name}_foreign`);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    await sql`CREATE TABLE users (id integer)`;
    await sql.end();

    const error = await migrationFailure(url);
    expect(error).toBeInstanceOf(StartupError);
    expect(error.message).toBe(
      'Database migration failed: relation "users" already exists. The database may contain ' +
        'tables made outside these migrations; point DATABASE_URL at an empty database or one ' +
        'migrated by Fixwright.',
    );
  });

  it('names missing privileges', async () => {
    const database = `${name}_limited`;
    await emptyDatabase(database);
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE ROLE ${limitedRole} LOGIN PASSWORD 'limited-password'`);
    await admin.unsafe(`REVOKE CREATE ON DATABASE ${database} FROM PUBLIC`);
    await admin.unsafe(`GRANT CONNECT ON DATABASE ${database} TO ${limitedRole}`);
    await admin.end();
    const url = new URL(adminUrl);
    url.username = limitedRole;
    url.password = 'limited-password';
    url.pathname = `/${database}`;

    const error = await migrationFailure(url.toString());
    expect(error).toBeInstanceOf(StartupError);
    expect(error.message).toMatch(/^Database migration failed: permission denied for /);
    expect(error.message).toContain(
      'The user in DATABASE_URL must be able to create schemas and tables in that database: make ' +
        'it the owner of the database, or use the owner in DATABASE_URL.',
    );

    const command = await runCliToExit(['migrate'], cliEnv({ DATABASE_URL: url.toString() }));
    expect(command.code).toBe(1);
    expect(command.stdout).toBe('');
    expect(command.stderr.trim().split('\n')).toHaveLength(1);
    expect(command.stderr).toContain('make it the owner of the database');
  }, 60_000);

  it('names a restore by another role', async () => {
    // The superuser restored the tables and schemas, then gave the database to the user.
    const database = `${name}_restored`;
    const adminOfDatabase = await emptyDatabase(database);
    await migrateDatabase(adminOfDatabase);
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE ROLE ${restoringRole} LOGIN PASSWORD 'owner-password'`);
    await admin.unsafe(`ALTER DATABASE ${database} OWNER TO ${restoringRole}`);
    await admin.end();
    const url = new URL(adminOfDatabase);
    url.username = restoringRole;
    url.password = 'owner-password';

    const error = await migrationFailure(url.toString());

    expect(error).toBeInstanceOf(StartupError);
    expect(error.message).toBe(
      'Database migration failed: permission denied for schema drizzle. The user in ' +
        'DATABASE_URL owns the database but not all of its schemas and tables, as after a ' +
        'restore by another role: drop the database, create it again and restore the backup ' +
        'as this user (see "Backups and restore" in docs/operations.md).',
    );
  }, 60_000);
});
