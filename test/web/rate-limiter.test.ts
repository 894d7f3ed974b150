import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../../src/db/client.ts';
import { PostgresRateLimiter } from '../../src/web/session/rate-limiter.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;
let second: DatabaseHandle;

beforeAll(async () => {
  database = await createTestDatabase();
  // A second pool on the same database acts as another web process.
  second = connectDatabase(database.url);
});

afterAll(async () => {
  await second.close();
  await database.close();
});

beforeEach(async () => {
  await database.db.execute(sql`DELETE FROM rate_limit_windows`);
});

async function storedWindows() {
  return database.db.execute<{ key: string; count: number }>(
    sql`SELECT key, count FROM rate_limit_windows ORDER BY key`,
  );
}

describe('PostgresRateLimiter', () => {
  it('allows the limit, then rejects with the time left', async () => {
    const limiter = new PostgresRateLimiter(database.db, 'sign-in', 3, 600);
    const decisions = [];
    for (let request = 0; request < 5; request++) decisions.push(await limiter.consume('198.51.100.4'));
    expect(decisions.map((decision) => decision.allowed)).toEqual([true, true, true, false, false]);
    for (const decision of decisions) {
      expect(decision.retryAfterSeconds).toBeGreaterThan(590);
      expect(decision.retryAfterSeconds).toBeLessThanOrEqual(600);
    }
    expect(await storedWindows()).toEqual([{ key: 'sign-in:198.51.100.4', count: 5 }]);
  });

  it('counts each key and each scope apart', async () => {
    const signIn = new PostgresRateLimiter(database.db, 'sign-in', 1, 600);
    const other = new PostgresRateLimiter(database.db, 'other', 1, 600);
    expect((await signIn.consume('198.51.100.4')).allowed).toBe(true);
    expect((await signIn.consume('198.51.100.5')).allowed).toBe(true);
    expect((await other.consume('198.51.100.4')).allowed).toBe(true);
    expect((await signIn.consume('198.51.100.4')).allowed).toBe(false);
  });

  it('shares one count between processes, also under concurrent requests', async () => {
    const first = new PostgresRateLimiter(database.db, 'sign-in', 20, 600);
    const otherProcess = new PostgresRateLimiter(second.db, 'sign-in', 20, 600);
    const decisions = await Promise.all(
      Array.from({ length: 60 }, (_, index) => (index % 2 === 0 ? first : otherProcess).consume('203.0.113.9')),
    );
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(20);
    expect(await storedWindows()).toEqual([{ key: 'sign-in:203.0.113.9', count: 60 }]);
  });

  it('starts a new window once the old one has ended', async () => {
    const limiter = new PostgresRateLimiter(database.db, 'sign-in', 2, 600);
    for (let request = 0; request < 3; request++) await limiter.consume('198.51.100.4');
    expect((await limiter.consume('198.51.100.4')).allowed).toBe(false);
    await database.db.execute(
      sql`UPDATE rate_limit_windows SET resets_at = now() - interval '1 second'`,
    );
    const decision = await limiter.consume('198.51.100.4');
    expect(decision.allowed).toBe(true);
    expect(decision.retryAfterSeconds).toBeGreaterThan(590);
    expect(await storedWindows()).toEqual([{ key: 'sign-in:198.51.100.4', count: 1 }]);
  });

  it('deletes at most 100 expired windows per new window', async () => {
    await database.db.execute(sql`
      INSERT INTO rate_limit_windows (key, count, resets_at)
      SELECT 'sign-in:expired-' || n, 1, now() - make_interval(secs => n) FROM generate_series(1, 150) AS n
    `);
    const limiter = new PostgresRateLimiter(database.db, 'sign-in', 5, 600);
    await limiter.consume('198.51.100.4');
    const [afterFirst] = await database.db.execute<{ expired: number }>(
      sql`SELECT count(*)::integer AS expired FROM rate_limit_windows WHERE resets_at < now()`,
    );
    expect(afterFirst!.expired).toBe(50);
    // The oldest windows go first.
    const [oldest] = await database.db.execute<{ key: string }>(
      sql`SELECT key FROM rate_limit_windows WHERE resets_at < now() ORDER BY resets_at LIMIT 1`,
    );
    expect(oldest!.key).toBe('sign-in:expired-50');
    await limiter.consume('198.51.100.4');
    const [afterSecond] = await database.db.execute<{ expired: number }>(
      sql`SELECT count(*)::integer AS expired FROM rate_limit_windows WHERE resets_at < now()`,
    );
    expect(afterSecond!.expired).toBe(50);
  });

  it('stores a key longer than 200 characters as its hash', async () => {
    const limiter = new PostgresRateLimiter(database.db, 'sign-in', 1, 600);
    const long = 'x'.repeat(5000);
    expect((await limiter.consume(long)).allowed).toBe(true);
    expect((await limiter.consume(long)).allowed).toBe(false);
    expect((await limiter.consume(`${long}y`)).allowed).toBe(true);
    const keys = (await storedWindows()).map((row) => row.key);
    expect(keys).toHaveLength(2);
    for (const key of keys) expect(key).toMatch(/^sign-in:sha256:[0-9a-f]{64}$/);
  });
});
