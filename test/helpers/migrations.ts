import { readFileSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { inject } from 'vitest';
import { migrationsFolder } from '../../src/db/migrate.ts';

interface JournalEntry {
  tag: string;
}

/** Returns the tags of the migrations in drizzle's journal, oldest first. */
export function migrationTags(): string[] {
  const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta/_journal.json'), 'utf8'));
  return (journal.entries as JournalEntry[]).map((entry) => entry.tag);
}

/** Runs one migration file statement by statement, as drizzle's migrator splits it. */
export async function applyMigration(sql: postgres.Sql, tag: string): Promise<void> {
  const text = readFileSync(path.join(migrationsFolder, `${tag}.sql`), 'utf8');
  for (const statement of text.split('--> statement-breakpoint')) {
    await sql.unsafe(statement);
  }
}

export interface EmptyDatabase {
  /** Client of one connection whose session time zone is the one given. */
  sql: postgres.Sql;
  /** Closes the client and drops the database. */
  drop(): Promise<void>;
}

/**
 * Creates a database with no migration applied, for tests that apply migrations one by one.
 * The client's session uses `timeZone`.
 */
export async function createEmptyDatabase(prefix: string, timeZone: string): Promise<EmptyDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const name = `${prefix}_${Date.now()}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {}, connection: { TimeZone: timeZone } });
  return {
    sql,
    drop: async () => {
      await sql.end();
      const cleanup = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await cleanup.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
    },
  };
}

/**
 * Applies every migration before the one whose tag ends with `suffix`, and returns that tag,
 * for a test that stores rows and then applies it.
 */
export async function migrateUpTo(sql: postgres.Sql, suffix: string): Promise<string> {
  const tags = migrationTags();
  const index = tags.findIndex((tag) => tag.endsWith(suffix));
  if (index < 0) throw new Error(`No migration tag ends with ${suffix}.`);
  for (const tag of tags.slice(0, index)) await applyMigration(sql, tag);
  return tags[index]!;
}
