// Pooled connections that PostgreSQL closes, by pg_terminate_backend or by a restart, while
// they are idle or while they run a query. Runs against an embedded PostgreSQL of its own,
// which the restart tests stop and start again.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/env.ts';
import type { AppContext } from '../../src/context.ts';
import { baseClientOptions, connectDatabase, type DatabaseHandle } from '../../src/db/client.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';
import { startBoss, stopBoss, type PgBoss } from '../../src/jobs/boss.ts';
import { handleSweepReservations, sweepReservationsQueue } from '../../src/jobs/sweep-reservations.ts';
import { createQueues } from '../../src/jobs/workers.ts';
import { Keyring } from '../../src/keys/master-keys.ts';
import { createLogger } from '../../src/logger.ts';
import { reserveTokens, settleCall } from '../../src/usage/allowance.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { waitFor } from '../helpers/process.ts';
import { startRestartablePostgres, type RestartablePostgres } from '../helpers/restartable-postgres.ts';
import { createSignedInUser, formBody, formHeaders, type SignedInUser } from '../helpers/web.ts';

/** Connections of the pool under test, so that every one of them can be closed at once. */
const poolSize = 2;

let server: RestartablePostgres;
let handle: DatabaseHandle;
let boss: PgBoss;
let context: AppContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;
let apiToken: string;
const logs: Record<string, unknown>[] = [];
/** Reasons of the unhandled rejections seen while these tests ran. */
const unhandled: unknown[] = [];
const recordUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', recordUnhandled);
  server = await startRestartablePostgres();
  await migrateDatabase(server.url);
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'debug' });
  const logger = createLogger(config.LOG_LEVEL, sink);
  handle = connectDatabase(server.url, { max: poolSize, logger });
  boss = await startBoss(server.url, logger);
  await createQueues(boss);
  const keyring = new Keyring([{ version: 1, key: new Uint8Array(randomBytes(32)) }]);
  context = { config, db: handle.db, boss, logger, github: null, keyring };
  app = createApp(context);
  user = await createSignedInUser(handle.db, { login: 'closed-connections' });
  ({ token: apiToken } = await mintApiToken(handle.db, user.userId, 'closed connections'));
  await boss.work(sweepReservationsQueue, { pollingIntervalSeconds: 0.5 }, () =>
    handleSweepReservations(context),
  );
}, 60_000);

afterAll(async () => {
  process.off('unhandledRejection', recordUnhandled);
  if (boss) await stopBoss(boss, { graceful: false, timeoutMs: 1_000 });
  await handle?.close();
  await server?.remove();
});

/** Runs `run` on a connection of its own to the test's server, closed afterwards. */
async function withAdmin<T>(run: (admin: postgres.Sql) => Promise<T>): Promise<T> {
  const admin = postgres(server.url, {
    ...baseClientOptions,
    max: 1,
    connection: { application_name: 'closed-connections-test' },
  });
  try {
    return await run(admin);
  } finally {
    await admin.end();
  }
}

/** Ends the sessions whose application_name is `application` and returns their number. */
async function terminateSessions(application = 'fixwright'): Promise<number> {
  return withAdmin(async (admin) => {
    const rows = await admin`
      SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
      WHERE application_name = ${application}`;
    return rows.filter((row) => row.ended).length;
  });
}

/** Waits until `count` sessions of `application` run a statement that starts with `prefix`. */
async function waitForRunning(prefix: string, count: number, application = 'fixwright'): Promise<void> {
  await waitFor(
    () =>
      withAdmin(async (admin) => {
        const [row] = await admin`
          SELECT count(*)::int AS running FROM pg_stat_activity
          WHERE application_name = ${application} AND state = 'active'
            AND starts_with(query, ${prefix})`;
        return row!.running === count;
      }),
    { timeoutMs: 10_000, describe: () => `${count} sessions of ${application} running ${prefix}` },
  );
}

/** Opens every connection of the pool and leaves them idle. */
async function openEveryConnection(): Promise<void> {
  const queries = Array.from({ length: poolSize }, () =>
    handle.db.execute(sql`SELECT pg_sleep(0.05)`),
  );
  await Promise.all(queries);
}

/**
 * Closes every connection of the pool while each runs a query, by `cause`, and checks that those
 * queries failed with a closed connection. A restart's fast shutdown closes some sockets with a
 * reset, so ECONNRESET counts as closed too.
 */
async function closeBusyConnections(cause: 'terminate' | 'restart'): Promise<void> {
  const sleeps = Array.from({ length: poolSize }, () =>
    handle.db.execute(sql`SELECT pg_sleep(30)`).then(
      () => 'completed',
      (error: unknown) => errorCode(error),
    ),
  );
  await waitForRunning('SELECT pg_sleep(30)', poolSize);
  if (cause === 'terminate') {
    expect(await terminateSessions()).toBe(poolSize);
  } else {
    await server.stop();
    await server.start();
  }
  for (const code of await Promise.all(sleeps)) {
    expect(['CONNECTION_CLOSED', 'ECONNRESET']).toContain(code);
  }
}

/** The code of a database error, looked up on drizzle's wrapper first. */
function errorCode(error: unknown): string {
  const { code, cause } = error as { code?: unknown; cause?: { code?: unknown } };
  return String(cause?.code ?? code);
}

async function usageStatus(): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await app.request('/api/user/usage', {
    headers: { authorization: `Bearer ${apiToken}` },
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function reserve(tokens: number, idempotencyKey: string) {
  return reserveTokens(handle.db, { userId: user.userId, tokens, idempotencyKey, ttlSeconds: 60 });
}

function resentLines(): Record<string, unknown>[] {
  return logs.filter((line) => line.event === 'database.query_resent');
}

describe('postgres.js on a closed connection', () => {
  it('replays the old session error once', async () => {
    // connectDatabase's resend depends on this behaviour of postgres.js 3.4.9. A query that runs
    // when its session ends fails with CONNECTION_CLOSED. The first query after the reconnect
    // gets the session's FATAL error before it is sent, and the next query succeeds.
    const application = 'closed-connections-raw';
    const client = postgres(server.url, {
      ...baseClientOptions,
      max: 1,
      connection: { application_name: application },
    });
    try {
      const sleeping = client`SELECT pg_sleep(30)`.then(
        () => 'completed',
        (error: unknown) => errorCode(error),
      );
      await waitForRunning('SELECT pg_sleep(30)', 1, application);
      expect(await terminateSessions(application)).toBe(1);
      expect(await sleeping).toBe('CONNECTION_CLOSED');

      const replayed = await client`SELECT 1 AS one`.catch((error: unknown) => error);
      expect(replayed).toBeInstanceOf(postgres.PostgresError);
      expect((replayed as postgres.PostgresError).code).toBe('57P01');
      expect((replayed as postgres.PostgresError).severity).toBe('FATAL');
      expect(await client`SELECT 1 AS one`).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  });
});

describe('web requests after closed connections', () => {
  it('answer after idle sessions end', async () => {
    await openEveryConnection();
    expect(await terminateSessions()).toBe(poolSize);
    // The close reaches the client a moment after pg_terminate_backend returns.
    await new Promise((resolve) => setTimeout(resolve, 200));

    const { status, body } = await usageStatus();
    expect(status).toBe(200);
    expect(body.plan).toBe('free');
    expect(body.limit).toBe(1000);
  });

  it('answer after a restart while idle', async () => {
    await openEveryConnection();
    await server.stop();
    await server.start();

    const { status, body } = await usageStatus();
    expect(status).toBe(200);
    expect(body.used).toBe(0);
  }, 30_000);

  it('answer after busy sessions end', async () => {
    const resentBefore = resentLines().length;
    await closeBusyConnections('terminate');

    const { status, body } = await usageStatus();
    expect(status).toBe(200);
    expect(body.plan).toBe('free');
    expect(body.remaining).toBe(1000);
    const lines = resentLines().slice(resentBefore);
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines[0]!.code).toBe('57P01');
    expect(lines[0]!.level).toBe(30);
  });

  it('write after a restart while busy', async () => {
    await closeBusyConnections('restart');

    // The token page creates the token in a transaction, then lists the user's tokens.
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken, name: 'after the restart' }),
    });
    expect(response.status).toBe(200);
    const rows = await withAdmin(
      (admin) => admin`SELECT name FROM api_tokens WHERE user_id = ${user.userId} ORDER BY name`,
    );
    expect(rows.map((row) => row.name)).toEqual(['after the restart', 'closed connections']);
    expect(logs.filter((line) => line.event === 'http.database_unavailable')).toEqual([]);
  }, 30_000);
});

describe('queries that may have run', () => {
  it('are not sent again', async () => {
    await withAdmin((admin) => admin`CREATE TABLE IF NOT EXISTS closed_connection_writes (id int)`);
    const write = handle.db
      .execute(sql`INSERT INTO closed_connection_writes SELECT 1 FROM pg_sleep(30)`)
      .then(
        () => 'completed',
        (error: unknown) => errorCode(error),
      );
    await waitForRunning('INSERT INTO closed_connection_writes', 1);
    expect(await terminateSessions()).toBeGreaterThanOrEqual(1);

    expect(await write).toBe('CONNECTION_CLOSED');
    // Queries on every connection of the pool, one of which reconnects with a stale error.
    const ones = await Promise.all(
      Array.from({ length: poolSize }, () => handle.db.execute(sql`SELECT 1 AS one`)),
    );
    expect(ones.map((rows) => rows[0])).toEqual(Array(poolSize).fill({ one: 1 }));
    const [row] = await withAdmin(
      (admin) => admin`
        SELECT (SELECT count(*)::int FROM closed_connection_writes) AS rows,
          (SELECT count(*)::int FROM pg_stat_activity
           WHERE starts_with(query, 'INSERT INTO closed_connection_writes')) AS running`,
    );
    expect(row!.rows).toBe(0);
    expect(row!.running).toBe(0);
  });
});

describe('transactions after closed connections', () => {
  it('commit after busy sessions end', async () => {
    await withAdmin((admin) => admin`CREATE TABLE IF NOT EXISTS closed_connection_commits (id int)`);
    await closeBusyConnections('terminate');
    const resentBefore = resentLines().length;

    // Each BEGIN opens one of the closed connections and gets the error of its old session.
    const transactions = Array.from({ length: poolSize }, (_, index) =>
      handle.db.transaction(async (tx) => {
        await tx.execute(sql`INSERT INTO closed_connection_commits VALUES (${index})`);
      }),
    );
    await Promise.all(transactions);

    const rows = await withAdmin(
      (admin) => admin`SELECT id FROM closed_connection_commits ORDER BY id`,
    );
    expect(rows.map((row) => row.id)).toEqual([0, 1]);
    expect(resentLines().length - resentBefore).toBe(poolSize);
  });
});

describe('a job after closed connections', () => {
  it('completes after a restart while busy', async () => {
    const reservation = await reserve(40, 'closed-connections-expired');
    expect(reservation.ok).toBe(true);
    await withAdmin(
      (admin) => admin`
        UPDATE token_reservations SET expires_at = now() - interval '1 minute'
        WHERE user_id = ${user.userId}`,
    );
    await closeBusyConnections('restart');

    const jobId = (await boss.send(sweepReservationsQueue, {}))!;
    const job = await waitFor(
      () =>
        withAdmin(async (admin) => {
          const [row] = await admin`SELECT state, output FROM pgboss.job WHERE id = ${jobId}`;
          return row && (row.state === 'completed' || row.state === 'failed') ? row : undefined;
        }),
      { timeoutMs: 15_000, describe: () => `job ${jobId} to end` },
    );
    expect(job.state).toBe('completed');
    const [counters] = await withAdmin(
      (admin) => admin`
        SELECT tokens_reserved::int AS reserved,
          (SELECT count(*)::int FROM token_reservations WHERE user_id = ${user.userId}) AS reservations
        FROM users WHERE id = ${user.userId}`,
    );
    expect(counters!.reserved).toBe(0);
    expect(counters!.reservations).toBe(0);
  }, 30_000);
});

describe('the allowance after closed connections', () => {
  it('reserves and settles once', async () => {
    await closeBusyConnections('restart');
    const reservation = await reserve(100, 'closed-connections-call');
    expect(reservation.ok).toBe(true);
    const reservationId = reservation.ok ? reservation.reservationId : null;

    await closeBusyConnections('terminate');
    const settle = () =>
      settleCall(handle.db, {
        userId: user.userId,
        reservationId,
        idempotencyKey: 'closed-connections-call',
        provider: 'groq',
        model: 'llama-3.3-70b-versatile',
        keySource: 'platform',
        usage: { promptTokens: 60, completionTokens: 25, totalTokens: 85 },
      });
    const settlement = await settle();
    expect(settlement.recorded).toBe(true);
    expect(settlement.charged).toBe(85);
    expect(settlement.tokensUsed).toBe(85);
    // The ledger's idempotency key keeps a repeat from charging again.
    const repeat = await settle();
    expect(repeat.recorded).toBe(false);
    expect(repeat.tokensUsed).toBe(85);

    const [counters] = await withAdmin(
      (admin) => admin`
        SELECT tokens_used::int AS used, tokens_reserved::int AS reserved,
          (SELECT count(*)::int FROM token_events WHERE user_id = ${user.userId}) AS ledger_rows
        FROM users WHERE id = ${user.userId}`,
    );
    expect(counters!.used).toBe(85);
    expect(counters!.reserved).toBe(0);
    expect(counters!.ledger_rows).toBe(1);
    expect(unhandled).toEqual([]);
  }, 30_000);
});
