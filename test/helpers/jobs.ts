import type PgBoss from 'pg-boss';
import { expect } from 'vitest';
import type { TestContext } from './context.ts';

/**
 * Fetches job `jobId` of `queue` as a worker does and runs `handle` on it, then completes the
 * job, or fails it with the error when `handle` throws. A job that waits for its start time is
 * made due first, as if the wait had passed. `whileActive` runs after the fetch and before
 * `handle`, while the job is active.
 */
export async function runDueJob<Data extends object>(
  context: TestContext,
  queue: string,
  jobId: string,
  handle: (job: PgBoss.JobWithMetadata<Data>) => Promise<void>,
  whileActive?: () => Promise<void>,
): Promise<void> {
  await context.database.sql`
    UPDATE pgboss.job SET start_after = now() WHERE name = ${queue} AND id = ${jobId}`;
  const jobs = await context.boss.fetch<Data>(queue, { includeMetadata: true, batchSize: 10 });
  const job = jobs.find((candidate) => candidate.id === jobId);
  expect(job).toBeDefined();
  // A job of another test that is due again, such as the retry of a failed one, fails again.
  const others = jobs.filter((candidate) => candidate.id !== jobId).map((candidate) => candidate.id);
  if (others.length > 0) await context.boss.fail(queue, others);
  await whileActive?.();
  try {
    await handle(job!);
  } catch (error) {
    // pg-boss's own worker stores the error as the job's output too.
    await context.boss.fail(queue, jobId, error as object);
    throw error;
  }
  await context.boss.complete(queue, jobId);
}

/** A job of a keyed queue with its start delay from creation and its wait from now, in ms. */
export interface KeyedJob {
  id: string;
  state: string;
  delayMs: number;
  waitMs: number;
}

/** Lists the jobs of `queue` with singleton key `key`, oldest first. */
export async function listKeyedJobs(context: TestContext, queue: string, key: string): Promise<KeyedJob[]> {
  return context.database.sql<KeyedJob[]>`
    SELECT id, state,
      (extract(epoch FROM start_after - created_on) * 1000)::int AS "delayMs",
      (extract(epoch FROM start_after - now()) * 1000)::int AS "waitMs"
    FROM pgboss.job
    WHERE name = ${queue} AND singleton_key = ${key}
    ORDER BY created_on, id`;
}

/**
 * Builds accessors for the jobs of `queue` with singleton key `key()`, such as the installation
 * and pull request checks, which tests start one at a time. `context` and `key` are read on each
 * call, because tests create their context in beforeEach.
 */
export function keyedQueue<Data extends object>(options: {
  context: () => TestContext;
  queue: string;
  key: () => string;
  handle: (context: TestContext, job: PgBoss.JobWithMetadata<Data>) => Promise<void>;
}) {
  const { context, queue, key, handle } = options;
  return {
    /** Lists the key's jobs, oldest first. */
    jobs: () => listKeyedJobs(context(), queue, key()),

    /** Returns the id of the key's one job, which must be queued and not started. */
    async queued(): Promise<string> {
      const jobs = await listKeyedJobs(context(), queue, key());
      expect(jobs.map((job) => job.state)).toEqual(['created']);
      return jobs[0]!.id;
    },

    /** Runs job `jobId` with `handle` as a worker does (see runDueJob). */
    run: (jobId: string, whileActive?: () => Promise<void>) =>
      runDueJob<Data>(context(), queue, jobId, (job) => handle(context(), job), whileActive),
  };
}
