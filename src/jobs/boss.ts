import PgBoss from 'pg-boss';
import type { Transaction } from '../db/client.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';

export type { PgBoss };

/**
 * Starts pg-boss in the `pgboss` schema. Its maintenance, every `maintenanceIntervalSeconds`,
 * is what retries a job whose worker died: an active job past its expiry goes back to retry.
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
  boss.on('error', (error) => {
    // A worker's error arrives as a plain object that names its queue.
    const { queue } = error as { queue?: unknown };
    logger.error({ event: 'jobs.error', queue, err: toSafeError(error) }, 'job queue error');
  });
  await boss.start();
  return boss;
}

/**
 * Adapts a drizzle transaction to pg-boss's `db` option, so a job is sent in the same
 * transaction as the rows it works on and a rollback removes both.
 */
export function transactionDb(tx: Transaction): PgBoss.Db {
  // drizzle keeps the postgres.js transaction client on this internal field (drizzle-orm 0.45).
  const client = (tx as unknown as { session: { client: { unsafe: Function } } }).session.client;
  return {
    async executeSql(text: string, values: unknown[]) {
      const parameters = values.map((value) => {
        if (value === undefined) return null;
        const isPlainObject =
          value !== null &&
          typeof value === 'object' &&
          !(value instanceof Date) &&
          !Buffer.isBuffer(value) &&
          !Array.isArray(value);
        return isPlainObject ? JSON.stringify(value) : value;
      });
      const rows = await client.unsafe(text, parameters);
      return { rows };
    },
  };
}
