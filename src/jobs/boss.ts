import type { EventEmitter } from 'node:events';
import PgBoss from 'pg-boss';
import { arrayLiteral, isPlainObject } from '../db/arrays.ts';
import type { Transaction } from '../db/client.ts';
import { isConnectionError } from '../db/connection-errors.ts';
import { OutageLog } from '../db/outage-log.ts';
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

/**
 * Starts pg-boss in the `pgboss` schema. Its maintenance, every `maintenanceIntervalSeconds`,
 * is what retries a job whose worker died: an active job past its expiry goes back to retry.
 * While the database is unreachable, the first connection error is logged once as a warning
 * and the rest are counted, until a probe every 5 s finds the database back.
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
  await boss.stop({ graceful: options.graceful, wait: true, timeout: options.timeoutMs ?? 20_000 });
  const connections = openConnections.get(boss);
  for (let waited = 0; connections && connections.size > 0 && waited < 5_000; waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
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
