import postgres from 'postgres';

/** Arbitrary constant ("fixw") that names Fixwright's start-up lock among advisory locks. */
export const startupLockId = 0x66697877;

/**
 * Runs `task` while holding a session-level advisory lock on its own connection, so processes
 * starting together take turns at schema changes (migrations, pg-boss queue partitions).
 */
export async function withAdvisoryLock<T>(url: string, lockId: number, task: () => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`SELECT pg_advisory_lock(${lockId})`;
    try {
      return await task();
    } finally {
      await sql`SELECT pg_advisory_unlock(${lockId})`;
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}
