import { fileURLToPath } from 'node:url';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { startupLockId, withAdvisoryLock } from './advisory-lock.ts';
import { baseClientOptions, closeOnAbort } from './client.ts';

export const migrationsFolder = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * Applies pending migrations under the start-up advisory lock, so processes that start
 * together migrate one after another; the later ones find nothing left to do. When `signal`
 * aborts, the connections close at once, so PostgreSQL rolls back the migration in progress,
 * and this rejects with `signal.reason`.
 */
export async function migrateDatabase(url: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  await withAdvisoryLock(
    url,
    startupLockId,
    async () => {
      const sql = postgres(url, { ...baseClientOptions, max: 1 });
      const removeCloseOnAbort = closeOnAbort(sql, signal);
      try {
        await migrate(drizzle(sql), { migrationsFolder });
      } catch (error) {
        signal?.throwIfAborted();
        // drizzle's message is the whole failing statement; PostgreSQL's own reason is the cause.
        const cause = (error as { cause?: { message?: string } }).cause?.message;
        throw new Error(
          `Database migration failed: ${cause ?? (error as Error).message}. The database may ` +
            'contain tables made outside these migrations; point DATABASE_URL at an empty ' +
            'database or one migrated by Fixwright.',
          { cause: error },
        );
      } finally {
        removeCloseOnAbort();
        await sql.end({ timeout: 5 });
      }
    },
    { signal },
  );
}
