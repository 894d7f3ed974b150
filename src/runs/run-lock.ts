import postgres from 'postgres';
import { baseClientOptions, databaseUrlOf, type Database } from '../db/client.ts';
import { isDatabaseUnreachable } from '../db/connection-errors.ts';

/**
 * Runs `task` while holding a session-level advisory lock named `key` on a connection of its
 * own. Unlike a transaction lock, it lets `task` commit its own writes as it goes, so
 * progress stored before a crash survives.
 *
 * The connection is not reserved from `db`'s pool, because postgres.js 3.4.9 ends the process
 * when a query is sent on a reserved connection that has closed, as the unlock after a
 * database restart would be (see guardTransactions). A closed session has released its lock,
 * so an unlock that finds the database unreachable is skipped.
 */
export async function withSessionLock<T>(
  db: Database,
  key: string,
  task: () => Promise<T>,
): Promise<T> {
  const connection = postgres(databaseUrlOf(db), {
    ...baseClientOptions,
    max: 1,
    connection: { application_name: 'fixwright-run-lock' },
  });
  try {
    await connection`SELECT pg_advisory_lock(hashtextextended(${key}, 0))`;
    try {
      return await task();
    } finally {
      await connection`SELECT pg_advisory_unlock(hashtextextended(${key}, 0))`.catch((error: unknown) => {
        if (!isDatabaseUnreachable(error)) throw error;
      });
    }
  } finally {
    await connection.end({ timeout: 5 });
  }
}
