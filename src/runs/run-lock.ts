import type { Sql } from 'postgres';
import type { Database } from '../db/client.ts';

/**
 * Runs `task` while holding a session-level advisory lock named `key` on a reserved
 * connection. Unlike a transaction lock, it lets `task` commit its own writes as it goes, so
 * progress stored before a crash survives.
 */
export async function withSessionLock<T>(
  db: Database,
  key: string,
  task: () => Promise<T>,
): Promise<T> {
  // connectDatabase builds the database with drizzle(), which keeps the postgres.js client here.
  const client = (db as Database & { $client: Sql }).$client;
  const connection = await client.reserve();
  try {
    await connection`SELECT pg_advisory_lock(hashtextextended(${key}, 0))`;
    try {
      return await task();
    } finally {
      await connection`SELECT pg_advisory_unlock(hashtextextended(${key}, 0))`;
    }
  } finally {
    connection.release();
  }
}
