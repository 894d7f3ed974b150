import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import PgBoss from 'pg-boss';
import { arrayLiteral, isPlainObject } from '../db/arrays.ts';
import type { Transaction } from '../db/client.ts';
import { isConnectionError } from '../db/connection-errors.ts';
import { OutageLog } from '../db/outage-log.ts';
import { retryWhileUnreachable } from '../db/retry-unreachable.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';

export type { PgBoss };

/** Seconds between checks of whether the database is back after a connection error. */
const reconnectProbeSeconds = 5;

/** pg-boss's own Db (pg-boss 10.4.2): `open()` creates the pg.Pool that it keeps in `pool`. */
interface OwnDb {
  open(): Promise<void>;
  pool?: EventEmitter;
  executeSql(text: string, values?: unknown[]): Promise<unknown>;
}

/** Connections of each started boss's pool that are open, until the pool reports them removed. */
const openConnections = new WeakMap<PgBoss, Set<unknown>>();

/** Aborted by stopBoss, which ends the retries of that boss's job completions. */
const stopControllers = new WeakMap<PgBoss, AbortController>();

/** The SQL builders of pg-boss 10.4.2 (src/plans.js), which its package does not export otherwise. */
const pgBossPlans = createRequire(import.meta.url)('pg-boss/src/plans.js') as {
  completeJobs(schema: string): string;
  failJobsById(schema: string): string;
};

/**
 * Starts pg-boss in the `pgboss` schema. Its maintenance, every `maintenanceIntervalSeconds`,
 * is what retries a job whose worker died: an active job past its expiry goes back to retry.
 * While the database is unreachable, the first connection error is logged once as a warning
 * and the rest are counted, until a probe every 5 s finds the database back. The completion of
 * a job whose handler ended meanwhile is retried until the database is reachable again (see
 * `guardJobCompletions`).
 */
export async function startBoss(
  url: string,
  logger: Logger,
  options: { maintenanceIntervalSeconds?: number } = {},
): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: url,
    schema: 'pgboss',
    max: 5,
    maintenanceIntervalSeconds: options.maintenanceIntervalSeconds ?? 120,
  });
  const outage = watchForOutage(boss, logger);
  boss.on('error', (error) => {
    // A worker's error arrives as a plain object that names its queue.
    const { queue } = error as { queue?: unknown };
    if (isConnectionError(error)) {
      outage.report(queue, error);
      return;
    }
    logger.error({ event: 'jobs.error', queue, err: toSafeError(error) }, 'job queue error');
  });
  boss.on('stopped', () => outage.stop());

  // The pool is opened here rather than in start(), so that its connections are tracked from
  // the first one on. start() skips open() when the pool is open already.
  const db = boss.getDb() as unknown as OwnDb;
  const stopping = new AbortController();
  stopControllers.set(boss, stopping);
  guardJobCompletions(db, {
    logger,
    signal: stopping.signal,
    onUnreachable: (queue, error) => outage.report(queue, error),
  });
  await db.open();
  if (db.pool) {
    const connections = new Set<unknown>();
    db.pool.on('connect', (client) => connections.add(client));
    db.pool.on('remove', (client) => connections.delete(client));
    openConnections.set(boss, connections);
  }
  await boss.start();
  return boss;
}

/**
 * Stops pg-boss and waits until its connections are closed, so PostgreSQL can be stopped next
 * without terminating a connection under it. pg.Pool's end() resolves when it has asked its
 * connections to close (pg-pool 3.14), not when they are closed, so this waits for each
 * connection's `remove` event too, up to 5 s.
 */
export async function stopBoss(
  boss: PgBoss,
  options: { graceful: boolean; timeoutMs?: number },
): Promise<void> {
  stopControllers.get(boss)?.abort();
  await boss.stop({ graceful: options.graceful, wait: true, timeout: options.timeoutMs ?? 20_000 });
  const connections = openConnections.get(boss);
  for (let waited = 0; connections && connections.size > 0 && waited < 5_000; waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Makes pg-boss's own job completions survive a database outage. pg-boss 10.4.2's workers
 * complete or fail a job after its handler without awaiting the promise (manager.js, `watch`),
 * so a rejected completion is an unhandled rejection, which ends the process. Here those two
 * statements are retried while the database is unreachable (after 1 s, 2 s and 4 s, then every
 * 5 s) and never reject. A repeat of a statement that had committed before its connection was
 * cut changes nothing that matters: completing changes only active jobs, and failing a job that
 * waits for its retry again only sets its start time anew. A completion that stopBoss
 * interrupts, or that fails otherwise, is logged as `jobs.completion_failed` and resolves as if
 * it changed no job. The job then stays active until the recovery pass or its expiry retries it.
 */
function guardJobCompletions(
  db: OwnDb,
  options: { logger: Logger; signal: AbortSignal; onUnreachable(queue: unknown, error: unknown): void },
): void {
  const statements = new Map([
    [pgBossPlans.completeJobs('pgboss'), 'complete'],
    [pgBossPlans.failJobsById('pgboss'), 'fail'],
  ]);
  const execute = db.executeSql.bind(db);
  db.executeSql = async (text, values) => {
    const statement = statements.get(text);
    if (statement === undefined) return execute(text, values);
    const [queue, jobIds] = values ?? [];
    try {
      return await retryWhileUnreachable(() => execute(text, values), {
        signal: options.signal,
        onRetry: (error) => options.onUnreachable(queue, error),
      });
    } catch (error) {
      options.logger.error(
        { event: 'jobs.completion_failed', queue, jobIds, statement, err: toSafeError(error) },
        `could not ${statement} the job in the job queue; it stays active until the recovery ` +
          'pass or its expiry retries it',
      );
      // pg-boss reads the number of jobs changed from this row.
      return { rows: [{ count: 0 }] };
    }
  };
}

/**
 * Tracks one database outage: logs its first connection error as a warning, counts the
 * others, and logs once more when a probe query on the boss's pool succeeds again.
 */
function watchForOutage(boss: PgBoss, logger: Logger) {
  const outageLog = new OutageLog(Number.POSITIVE_INFINITY);
  let probe: NodeJS.Timeout | undefined;
  let probing = false;

  const checkDatabase = async () => {
    if (probing) return;
    probing = true;
    try {
      await (boss.getDb() as unknown as OwnDb).executeSql('SELECT 1');
      if (probe === undefined) return;
      clearInterval(probe);
      probe = undefined;
      outageLog.recover((suppressed) => {
        logger.info(
          { event: 'jobs.database_available', suppressedErrors: suppressed },
          'job queue reconnected to the database',
        );
      });
    } catch {
      // Still unreachable; the next probe tries again.
    } finally {
      probing = false;
    }
  };

  return {
    report(queue: unknown, error: unknown) {
      outageLog.fail(() => {
        const { type, message, code } = toSafeError(error);
        logger.warn(
          { event: 'jobs.database_unavailable', queue, err: { type, message, code } },
          `job queue cannot reach the database; retrying every ${reconnectProbeSeconds} s, ` +
            'further connection errors are counted, not logged',
        );
      });
      if (probe !== undefined) return;
      probe = setInterval(() => void checkDatabase(), reconnectProbeSeconds * 1000);
      probe.unref();
    },
    stop() {
      clearInterval(probe);
      probe = undefined;
    },
  };
}

/**
 * Adapts a drizzle transaction to pg-boss's `db` option, so a job is sent in the same
 * transaction as the rows it works on and a rollback removes both. Parameters are converted the
 * way node-postgres, pg-boss's own driver, converts them: objects to JSON and arrays to array
 * literals. postgres.js would need the array types that Fixwright's clients do not fetch.
 */
export function transactionDb(tx: Transaction): PgBoss.Db {
  // drizzle keeps the postgres.js transaction client on this internal field (drizzle-orm 0.45).
  const client = (tx as unknown as { session: { client: { unsafe: Function } } }).session.client;
  return {
    async executeSql(text: string, values: unknown[]) {
      const rows = await client.unsafe(text, values.map(toParameter));
      return { rows };
    },
  };
}

/** Returns `value` as postgres.js should send it for a pg-boss query. */
function toParameter(value: unknown): unknown {
  if (value === undefined) return null;
  if (Array.isArray(value)) return arrayLiteral(value);
  if (isPlainObject(value)) return JSON.stringify(value);
  return value;
}
