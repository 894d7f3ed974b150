import { Writable } from 'node:stream';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBoss, stopBoss, type PgBoss } from '../../src/jobs/boss.ts';
import { createLogger } from '../../src/logger.ts';
import { waitFor } from '../helpers/process.ts';
import { startRestartablePostgres, type RestartablePostgres } from '../helpers/restartable-postgres.ts';

let server: RestartablePostgres;
/** Reasons of the unhandled rejections seen while these tests ran. */
const unhandled: unknown[] = [];
const recordUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  server = await startRestartablePostgres();
  process.on('unhandledRejection', recordUnhandled);
}, 60_000);

afterAll(async () => {
  process.off('unhandledRejection', recordUnhandled);
  await server?.remove();
});

/** Starts pg-boss on the test's server with a logger whose lines are kept in memory. */
async function startCapturedBoss(): Promise<{ boss: PgBoss; logs: Record<string, unknown>[] }> {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const boss = await startBoss(server.url, createLogger('debug', sink));
  return { boss, logs };
}

function linesOf(logs: Record<string, unknown>[], event: string): Record<string, unknown>[] {
  return logs.filter((line) => line.event === event);
}

/**
 * Starts `workers` workers on `queue` whose handlers wait until `release` is called, then
 * return, or throw when the job's data has `fail: true`. `started` has the ids of the jobs
 * whose handlers run.
 */
async function gatedWorkers(boss: PgBoss, queue: string, workers: number) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const started = new Set<string>();
  for (let worker = 0; worker < workers; worker++) {
    const options = { pollingIntervalSeconds: 0.5, batchSize: 1 };
    await boss.work<{ fail: boolean }>(queue, options, async ([job]) => {
      started.add(job!.id);
      await gate;
      if (job!.data.fail) throw new Error('the handler failed on purpose');
    });
  }
  return { release, started };
}

describe('job completions in an outage', () => {
  it('written after the restart', async () => {
    const { boss, logs } = await startCapturedBoss();
    try {
      // A failed job waits a minute for its retry, so its state stays `retry` for the check.
      await boss.createQueue('outage', { name: 'outage', retryLimit: 1, retryDelay: 60 });
      const { release, started } = await gatedWorkers(boss, 'outage', 2);
      const completedId = (await boss.send('outage', { fail: false }))!;
      const failedId = (await boss.send('outage', { fail: true }))!;
      await waitFor(async () => started.size === 2, {
        timeoutMs: 10_000,
        describe: () => `both handlers to start; started: ${[...started].join(', ')}`,
      });

      await server.stop();
      release();
      // The first retries come 1 s and 3 s after the handlers end, so both fail at least once.
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      expect(unhandled).toEqual([]);
      await server.start();

      const sql = postgres(server.url, { max: 1, onnotice: () => {} });
      try {
        const states = async () => {
          const rows = await sql<{ id: string; state: string }[]>`
            SELECT id, state FROM pgboss.job WHERE name = 'outage'`;
          return new Map(rows.map((row) => [row.id, row.state]));
        };
        // Later retries come every 5 s.
        await waitFor(
          async () => {
            const byId = await states();
            return byId.get(completedId) === 'completed' && byId.get(failedId) === 'retry';
          },
          { timeoutMs: 15_000, describe: () => 'the completion and the failure to be written' },
        );
      } finally {
        await sql.end();
      }
      expect(unhandled).toEqual([]);
      expect(linesOf(logs, 'jobs.database_unavailable')).toHaveLength(1);
      expect(linesOf(logs, 'jobs.completion_failed')).toEqual([]);
      await waitFor(async () => linesOf(logs, 'jobs.database_available').length === 1, {
        timeoutMs: 10_000,
        describe: () => 'jobs.database_available in the log',
      });
    } finally {
      await stopBoss(boss, { graceful: false, timeoutMs: 1_000 });
    }
  }, 60_000);

  it('given up at a stop', async () => {
    const { boss, logs } = await startCapturedBoss();
    let stopped = false;
    try {
      await boss.createQueue('outage-stop', { name: 'outage-stop', retryLimit: 0 });
      const { release, started } = await gatedWorkers(boss, 'outage-stop', 1);
      const jobId = (await boss.send('outage-stop', { fail: false }))!;
      await waitFor(async () => started.has(jobId), {
        timeoutMs: 10_000,
        describe: () => 'the handler to start',
      });

      await server.stop();
      release();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const stopStartedAt = Date.now();
      await stopBoss(boss, { graceful: false, timeoutMs: 1_000 });
      stopped = true;
      // The retry ends at once instead of after its wait of up to 5 s.
      expect(Date.now() - stopStartedAt).toBeLessThan(4_000);

      const failures = linesOf(logs, 'jobs.completion_failed');
      expect(failures).toHaveLength(1);
      expect(failures[0]!.level).toBe(50);
      expect(failures[0]!.queue).toBe('outage-stop');
      expect(failures[0]!.jobIds).toEqual([jobId]);
      expect(failures[0]!.statement).toBe('complete');
      expect(unhandled).toEqual([]);
    } finally {
      if (!stopped) await stopBoss(boss, { graceful: false, timeoutMs: 1_000 });
      await server.start();
    }
  }, 60_000);
});
