import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../../src/db/client.ts';
import { isDatabaseUnreachable } from '../../src/db/connection-errors.ts';
import { withSessionLock } from '../../src/runs/run-lock.ts';
import { startRestartablePostgres, type RestartablePostgres } from '../helpers/restartable-postgres.ts';

let server: RestartablePostgres;
let handle: DatabaseHandle;
/** Errors that reached the process as uncaught exceptions while these tests ran. */
const uncaught: unknown[] = [];
const recordUncaught = (error: unknown) => uncaught.push(error);

beforeAll(async () => {
  server = await startRestartablePostgres();
  handle = connectDatabase(server.url, { max: 2 });
  await handle.db.execute(sql`CREATE TABLE IF NOT EXISTS guarded (value integer NOT NULL)`);
  process.on('uncaughtException', recordUncaught);
}, 60_000);

afterEach(async () => {
  // After a restart, a pooled connection whose query the stop ended fails its next query once
  // with that error (postgres.js 3.4.9), so the clean-up may need a second try.
  const truncate = () => handle.db.execute(sql`TRUNCATE guarded`);
  await truncate().catch((error: unknown) => {
    if (!isDatabaseUnreachable(error)) throw error;
    return truncate();
  });
});

afterAll(async () => {
  process.off('uncaughtException', recordUncaught);
  await handle?.sql.end({ timeout: 1 });
  await server?.remove();
});

async function storedValues(): Promise<number[]> {
  const rows = await handle.db.execute<{ value: number }>(sql`SELECT value FROM guarded ORDER BY value`);
  return rows.map((row) => row.value);
}

describe('guarded transactions', () => {
  it('commit, roll back and nest', async () => {
    const result = await handle.db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO guarded VALUES (1)`);
      await tx
        .transaction(async (inner) => {
          await inner.execute(sql`INSERT INTO guarded VALUES (2)`);
          throw new Error('roll back the savepoint');
        })
        .catch(() => {});
      await tx.transaction(async (inner) => {
        await inner.execute(sql`INSERT INTO guarded VALUES (3)`);
      });
      return 'committed';
    });
    const failed = await handle.db
      .transaction(async (tx) => {
        await tx.execute(sql`INSERT INTO guarded VALUES (4)`);
        throw new Error('roll back the transaction');
      })
      .catch((error: unknown) => (error as Error).message);

    expect(result).toBe('committed');
    expect(failed).toBe('roll back the transaction');
    expect(await storedValues()).toEqual([1, 3]);
  });

  it('survive a database restart', async () => {
    const inFlight = handle.db
      .transaction(async (tx) => {
        await tx.execute(sql`SELECT pg_sleep(5)`);
      })
      .catch((error: unknown) => error);
    let laterQuery: unknown;
    const resumed = handle.db
      .transaction(async (tx) => {
        await tx.execute(sql`INSERT INTO guarded VALUES (5)`);
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        laterQuery = await tx.execute(sql`INSERT INTO guarded VALUES (6)`).catch((error: unknown) => error);
      })
      .catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 500));

    await server.stop();
    const inFlightError = await inFlight;
    const resumedError = await resumed;
    // The second transaction's callback resumes 1.5 s after its start.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await server.start();

    expect(isDatabaseUnreachable(inFlightError)).toBe(true);
    expect(isDatabaseUnreachable(resumedError)).toBe(true);
    expect(isDatabaseUnreachable(laterQuery)).toBe(true);
    expect(uncaught).toEqual([]);
    // Each pooled connection connects again at once, instead of timing out after 30 s. A
    // connection whose query the stop ended passes that query's error to the next query it
    // runs (postgres.js 3.4.9), so up to one query per connection fails.
    const failures: unknown[] = [];
    for (let query = 0; query < 6; query++) {
      const startedAt = Date.now();
      await handle.db.execute(sql`SELECT 1`).catch((error: unknown) => failures.push(error));
      expect(Date.now() - startedAt).toBeLessThan(5_000);
    }
    expect(failures.length).toBeLessThanOrEqual(2);
    expect(failures.every((error) => isDatabaseUnreachable(error))).toBe(true);
    await handle.db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO guarded VALUES (7)`);
    });
    expect(await storedValues()).toEqual([7]);
  }, 60_000);
});

describe('withSessionLock', () => {
  it('survives a database restart', async () => {
    const result = await withSessionLock(handle.db, 'guard-test', async () => {
      await server.stop();
      return 'task done';
    });
    await server.start();

    expect(result).toBe('task done');
    expect(uncaught).toEqual([]);
    const again = await withSessionLock(handle.db, 'guard-test', async () => 'locked again');
    expect(again).toBe('locked again');
  }, 60_000);
});
