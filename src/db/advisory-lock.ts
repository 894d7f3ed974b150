import postgres from 'postgres';
import { baseClientOptions, closeOnAbort } from './client.ts';

/** Arbitrary constant ("fixw") that names Fixwright's start-up lock among advisory locks. */
export const startupLockId = 0x66697877;

/**
 * Runs `task` while holding a session-level advisory lock on its own connection, so processes
 * starting together take turns at schema changes (migrations, pg-boss queue partitions). When
 * `signal` aborts, the connection closes at once, which releases the lock or ends the wait for
 * it, and this rejects with `signal.reason` once `task` has settled.
 */
export async function withAdvisoryLock<T>(
  url: string,
  lockId: number,
  task: () => Promise<T>,
  options: { signal?: AbortSignal } = {},
): Promise<T> {
  const { signal } = options;
  const sql = postgres(url, { ...baseClientOptions, max: 1 });
  const removeCloseOnAbort = closeOnAbort(sql, signal);
  try {
    await sql`SELECT pg_advisory_lock(${lockId})`;
    try {
      return await task();
    } finally {
      // After an abort the connection is closed, and the lock went with it.
      if (!signal?.aborted) await sql`SELECT pg_advisory_unlock(${lockId})`;
    }
  } catch (error) {
    signal?.throwIfAborted();
    throw error;
  } finally {
    removeCloseOnAbort();
    await sql.end({ timeout: 5 });
  }
}
