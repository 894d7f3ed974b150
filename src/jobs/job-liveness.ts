import { sql } from 'drizzle-orm';
import postgres, { type Sql } from 'postgres';
import { baseClientOptions, type Database, type Transaction } from '../db/client.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';

/** Milliseconds between attempts to take the locks again after the liveness connection closed. */
const relockIntervalMs = 1_000;

/**
 * Returns the two 32-bit keys of a job's advisory lock: the first 64 bits of its uuid.
 * pg-boss and Fixwright's other advisory locks use the one-key (bigint) form, and PostgreSQL
 * keeps the one-key and two-key forms apart, so these never meet them.
 */
export function jobLockKeys(jobId: string): [number, number] {
  const hex = jobId.replaceAll('-', '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new Error(`Invalid job id ${JSON.stringify(jobId)}: expected a uuid.`);
  return [Number.parseInt(hex.slice(0, 8), 16) | 0, Number.parseInt(hex.slice(8, 16), 16) | 0];
}

/** Tells whether no session holds the job's liveness lock, that is, no worker runs it. */
export async function lockIsFree(db: Database | Transaction, jobId: string): Promise<boolean> {
  const [high, low] = jobLockKeys(jobId);
  // Taken and given back in one statement, so on one session.
  const [row] = await db.execute<{ free: boolean }>(sql`
    SELECT CASE WHEN pg_try_advisory_lock(${high}::integer, ${low}::integer)
      THEN pg_advisory_unlock(${high}::integer, ${low}::integer) ELSE false END AS free
  `);
  return row?.free ?? false;
}

/**
 * Marks the jobs this process is running as alive. While a handler runs, the process holds a
 * session-level advisory lock named after the job, on a connection of its own. PostgreSQL
 * drops those locks when the session ends, so when the process dies the lock goes too, and
 * `recoverDeadJobs` can tell a dead worker's job from a slow one within a minute instead of
 * waiting for the job's expiry. If the connection closes while the process lives (a database
 * restart, say), or another session held a job's lock when its handler started, the locks are
 * tried again once a second until this session holds them.
 */
export class JobLiveness {
  private readonly sql: Sql;
  /** Job id to the number of handlers of this process running it. */
  private readonly held = new Map<string, number>();
  /** Jobs whose lock the current session holds. Emptied when the connection closes. */
  private readonly locked = new Set<string>();
  private relockTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    url: string,
    private readonly logger: Logger,
  ) {
    this.sql = postgres(url, {
      ...baseClientOptions,
      max: 1,
      // postgres.js closes connections after 30 to 60 minutes by default, which would drop
      // the locks of long jobs.
      max_lifetime: null,
      connection: { application_name: 'fixwright-job-liveness' },
      onclose: () => {
        this.locked.clear();
        this.scheduleRelock();
      },
    });
  }

  /**
   * Opens the liveness connection. Workers call it before they take any job, so a server out of
   * connections fails the worker start instead of leaving running jobs unmarked, which recovery
   * would take for dead.
   */
  async connect(): Promise<void> {
    await this.sql`SELECT 1`;
  }

  /** Runs `task` while this process holds the job's liveness lock. */
  async run<T>(jobId: string, task: () => Promise<T>): Promise<T> {
    await this.hold(jobId);
    try {
      return await task();
    } finally {
      await this.release(jobId);
    }
  }

  /** Job ids whose handlers run in this process now. */
  runningJobs(): string[] {
    return [...this.held.keys()];
  }

  /** Stops trying to take locks and closes the connection, which releases every lock. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.relockTimer);
    this.held.clear();
    this.locked.clear();
    await this.sql.end({ timeout: 5 });
  }

  private async hold(jobId: string): Promise<void> {
    const count = this.held.get(jobId) ?? 0;
    this.held.set(jobId, count + 1);
    if (count > 0) return;
    // A failure here must not fail the job: without the lock the job is only at risk of
    // being retried early, and the relock loop keeps trying.
    try {
      if (!(await this.lock(jobId))) {
        // Another session holds it: a worker of an earlier attempt that is still running, or
        // a recovery pass testing the lock. Once that session lets go, this job looks dead
        // unless this process takes the lock, so the relock loop keeps trying.
        this.logger.warn(
          { event: 'jobs.liveness_lock_taken', jobId },
          'another session marks this job as alive; trying again every second',
        );
        this.scheduleRelock();
      }
    } catch (error) {
      this.logger.warn(
        { event: 'jobs.liveness_lock_failed', jobId, err: toSafeError(error) },
        'could not mark a running job as alive; trying again',
      );
      this.scheduleRelock();
    }
  }

  private async release(jobId: string): Promise<void> {
    const count = this.held.get(jobId) ?? 0;
    if (count > 1) {
      this.held.set(jobId, count - 1);
      return;
    }
    this.held.delete(jobId);
    if (!this.locked.delete(jobId)) return;
    const [high, low] = jobLockKeys(jobId);
    // A lost connection has released the lock already.
    await this.sql`SELECT pg_advisory_unlock(${high}::integer, ${low}::integer)`.catch(() => {});
  }

  /** Tries to take the job's lock, and returns false when another session holds it. */
  private async lock(jobId: string): Promise<boolean> {
    const [high, low] = jobLockKeys(jobId);
    const [row] = await this.sql<{ locked: boolean }[]>`
      SELECT pg_try_advisory_lock(${high}::integer, ${low}::integer) AS locked`;
    if (!row?.locked) return false;
    if (this.held.has(jobId)) {
      this.locked.add(jobId);
    } else {
      // The handler ended while the lock was being taken, and release() found nothing to
      // unlock, so the lock is given back here instead of being kept for good.
      await this.sql`SELECT pg_advisory_unlock(${high}::integer, ${low}::integer)`;
    }
    return true;
  }

  private scheduleRelock(): void {
    if (this.closed || this.relockTimer) return;
    this.relockTimer = setTimeout(() => {
      this.relockTimer = undefined;
      void this.relock();
    }, relockIntervalMs);
    this.relockTimer.unref();
  }

  private async relock(): Promise<void> {
    if (this.closed) return;
    try {
      let anyHeldElsewhere = false;
      for (const jobId of this.held.keys()) {
        if (!this.locked.has(jobId) && !(await this.lock(jobId))) anyHeldElsewhere = true;
      }
      if (anyHeldElsewhere) this.scheduleRelock();
    } catch {
      this.scheduleRelock();
    }
  }
}
