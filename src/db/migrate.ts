import { fileURLToPath } from 'node:url';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { startupLockId, withAdvisoryLock } from './advisory-lock.ts';
import { baseClientOptions, closeOnAbort } from './client.ts';
import { describeServerAddress } from './check-connection.ts';
import { ConfigError, maskUrlValue } from '../config/env.ts';
import { StartupError } from '../errors/startup-error.ts';
import type { Logger } from '../logger.ts';

export const migrationsFolder = fileURLToPath(new URL('../../migrations', import.meta.url));

/** The result of one `migrateDatabase` call. */
export interface MigrationOutcome {
  /** Number of migrations that this call applied. */
  applied: number;
  /**
   * Number of migrations recorded in the database that are newer than the newest one of this
   * version, because a newer Fixwright migrated the database.
   */
  newerInDatabase: number;
}

/**
 * Applies pending migrations under the start-up advisory lock, so processes that start
 * together migrate one after another; the later ones find nothing left to do. When `signal`
 * aborts, the connections close at once, so PostgreSQL rolls back the migration in progress,
 * and this rejects with `signal.reason`. With `existingOnly`, a database that contains no
 * Fixwright tables is left unchanged and this throws ConfigError (see
 * describeDatabaseWithoutTables).
 */
export async function migrateDatabase(
  url: string,
  options: { signal?: AbortSignal; existingOnly?: boolean } = {},
): Promise<MigrationOutcome> {
  const { signal } = options;
  const migrations = readMigrationFiles({ migrationsFolder });
  const oldestLocal = Math.min(...migrations.map((file) => file.folderMillis));
  const newestLocal = Math.max(...migrations.map((file) => file.folderMillis));
  return withAdvisoryLock(
    url,
    startupLockId,
    async () => {
      const sql = postgres(url, { ...baseClientOptions, max: 1 });
      const removeCloseOnAbort = closeOnAbort(sql, signal);
      try {
        if (options.existingOnly && !(await recordsMigration(sql, oldestLocal))) {
          const [row] = await sql`SELECT current_database() AS name`;
          throw new ConfigError(describeDatabaseWithoutTables(url, String(row!.name)));
        }
        const before = await countRecordedMigrations(sql, newestLocal);
        await migrate(drizzle(sql), { migrationsFolder });
        const after = await countRecordedMigrations(sql, newestLocal);
        return { applied: after.total - before.total, newerInDatabase: after.newer };
      } catch (error) {
        signal?.throwIfAborted();
        if (error instanceof ConfigError) throw error;
        throw migrationError(error, await ownsDatabase(sql));
      } finally {
        removeCloseOnAbort();
        await sql.end({ timeout: 5 });
      }
    },
    { signal },
  );
}

/** SQLSTATE insufficient_privilege: the user lacks a privilege on the database or schema. */
const insufficientPrivilege = '42501';

/**
 * Tells whether the user in DATABASE_URL owns the current database, or null when that cannot
 * be read, such as after the connection broke.
 */
async function ownsDatabase(sql: postgres.Sql): Promise<boolean | null> {
  try {
    const [row] = await sql`
      SELECT pg_get_userbyid(datdba) = current_user AS owns
      FROM pg_database WHERE datname = current_database()`;
    return typeof row?.owns === 'boolean' ? row.owns : null;
  } catch {
    return null;
  }
}

/**
 * Turns a failed migration into a StartupError with PostgreSQL's reason and what to change,
 * which the commands print as one line. With `ownsDatabase` true, the advice is for a user that
 * owns the database but not the objects in it, as after a restore by another role.
 */
function migrationError(error: unknown, ownsDatabase: boolean | null): StartupError {
  // drizzle's message is the whole failing statement; PostgreSQL's own error is the cause.
  const postgresError = ((error as { cause?: unknown }).cause ?? error) as { message?: string; code?: string };
  const reason = postgresError.message ?? String(error);
  let advice =
    'The database may contain tables made outside these migrations; point DATABASE_URL at ' +
    'an empty database or one migrated by Fixwright.';
  if (postgresError.code === insufficientPrivilege && ownsDatabase === true) {
    advice =
      'The user in DATABASE_URL owns the database but not all of its schemas and tables, as ' +
      'after a restore by another role: drop the database, create it again and restore the ' +
      'backup as this user (see "Backups and restore" in docs/operations.md).';
  } else if (postgresError.code === insufficientPrivilege) {
    advice =
      'The user in DATABASE_URL must be able to create schemas and tables in that database: ' +
      'make it the owner of the database, or use the owner in DATABASE_URL.';
  }
  return new StartupError(`Database migration failed: ${reason}. ${advice}`, { cause: error });
}

/**
 * Tells whether drizzle recorded the migration created at `createdAt` (milliseconds since the
 * epoch, as drizzle stores them). Every database that Fixwright migrated records its first
 * migration, while the drizzle migrations of another application have other creation times.
 */
async function recordsMigration(sql: postgres.Sql, createdAt: number): Promise<boolean> {
  const [table] = await sql`SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS exists`;
  if (!table?.exists) return false;
  const [row] = await sql`
    SELECT EXISTS (SELECT 1 FROM drizzle.__drizzle_migrations WHERE created_at = ${createdAt}) AS recorded`;
  return row!.recorded === true;
}

/**
 * Builds the message for a DATABASE_URL whose database contains no Fixwright tables, for a
 * command that does not create them. `name` is the database's name as the server reports it.
 */
export function describeDatabaseWithoutTables(url: string, name: string): string {
  return (
    `DATABASE_URL ${JSON.stringify(maskUrlValue(url))} names the database ${JSON.stringify(name)} ` +
    `at ${describeServerAddress(url)}, which contains no Fixwright tables, and this command ` +
    'does not create them. Run "fixwright migrate" or "npm start" with this DATABASE_URL ' +
    'first to create them, or correct DATABASE_URL to name the database that Fixwright uses.'
  );
}

/**
 * Counts the migrations that drizzle recorded in the database, and those of them created after
 * `newestLocal` (milliseconds since the epoch, as drizzle stores them).
 */
async function countRecordedMigrations(
  sql: postgres.Sql,
  newestLocal: number,
): Promise<{ total: number; newer: number }> {
  const [table] = await sql`SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS exists`;
  if (!table?.exists) return { total: 0, newer: 0 };
  const [row] = await sql`
    SELECT count(*)::int AS total, count(*) FILTER (WHERE created_at > ${newestLocal})::int AS newer
    FROM drizzle.__drizzle_migrations
  `;
  return { total: row!.total as number, newer: row!.newer as number };
}

/**
 * Logs the warning `database.schema_newer` when a newer Fixwright migrated the database, since
 * this version does not know the tables and columns those migrations changed.
 */
export function warnAboutNewerSchema(logger: Logger, outcome: MigrationOutcome): void {
  if (outcome.newerInDatabase === 0) return;
  logger.warn(
    { event: 'database.schema_newer', newerMigrations: outcome.newerInDatabase },
    `The database has ${outcome.newerInDatabase} migration(s) newer than this Fixwright ` +
      'version, so a newer version migrated it, and this one may fail on the changed tables. ' +
      'Run the newer version, or restore the backup taken before the upgrade.',
  );
}
