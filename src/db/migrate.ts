import { fileURLToPath } from 'node:url';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { startupLockId, withAdvisoryLock } from './advisory-lock.ts';

export const migrationsFolder = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * Applies pending migrations under the start-up advisory lock, so processes that start
 * together migrate one after another; the later ones find nothing left to do.
 */
export async function migrateDatabase(url: string): Promise<void> {
  await withAdvisoryLock(url, startupLockId, async () => {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await migrate(drizzle(sql), { migrationsFolder });
    } catch (error) {
      // drizzle's message is the whole failing statement; PostgreSQL's own reason is the cause.
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      throw new Error(
        `Database migration failed: ${cause ?? (error as Error).message}. The database may ` +
          'contain tables made outside these migrations; point DATABASE_URL at an empty ' +
          'database or one migrated by Fixwright.',
        { cause: error },
      );
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
}
