import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database } from '../../db/client.ts';

export interface RateLimitDecision {
  allowed: boolean;
  /** Whole seconds until the key's window ends, at least 1. */
  retryAfterSeconds: number;
}

/** Longer keys are stored as their SHA-256 hash, so any key fits the primary key's index. */
const longestStoredKey = 200;

/** Expired windows deleted each time a key starts a window, which keeps the table small without a job. */
const expiredRowsPerCleanup = 100;

/**
 * Counts requests per key in fixed windows stored in PostgreSQL, so every web process shares
 * one count. Counting is one upsert: concurrent requests for one key are serialised on its
 * row, and times come from the database clock, so processes with skewed clocks agree.
 */
export class PostgresRateLimiter {
  constructor(
    private readonly db: Database,
    /** Prefix of every key, such as `sign-in`. */
    readonly scope: string,
    readonly limit: number,
    readonly windowSeconds: number,
  ) {}

  /** Counts one request for `key` and returns whether it is within the limit and when the window ends. */
  async consume(key: string): Promise<RateLimitDecision> {
    let stored = `${this.scope}:${key}`;
    if (stored.length > longestStoredKey) {
      stored = `${this.scope}:sha256:${createHash('sha256').update(key).digest('hex')}`;
    }
    const [row] = await this.db.execute<{ count: number; retry_after: number; fresh: boolean }>(sql`
      INSERT INTO rate_limit_windows AS w (key, count, resets_at)
      VALUES (${stored}, 1, now() + make_interval(secs => ${this.windowSeconds}))
      ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN w.resets_at <= now() THEN 1 ELSE least(w.count, 2147483646) + 1 END,
        resets_at = CASE WHEN w.resets_at <= now() THEN excluded.resets_at ELSE w.resets_at END
      RETURNING w.count,
        greatest(ceil(extract(epoch FROM w.resets_at - now())), 1)::integer AS retry_after,
        w.count = 1 AS fresh
    `);
    if (!row) throw new Error(`Counting a request for ${this.scope} returned no row.`);
    if (row.fresh) await this.deleteExpired();
    return { allowed: row.count <= this.limit, retryAfterSeconds: Number(row.retry_after) };
  }

  private async deleteExpired(): Promise<void> {
    await this.db.execute(sql`
      DELETE FROM rate_limit_windows WHERE key IN (
        SELECT key FROM rate_limit_windows WHERE resets_at < now()
        ORDER BY resets_at LIMIT ${expiredRowsPerCleanup}
        FOR UPDATE SKIP LOCKED
      )
    `);
  }
}
