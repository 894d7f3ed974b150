import type { Config } from '../config/env.ts';
import { connectDatabase, type Database } from '../db/client.ts';
import { migrateDatabase } from '../db/migrate.ts';
import { locateDatabase } from '../database.ts';
import type { Logger } from '../logger.ts';

/**
 * Runs `task` against the configured database: the running bundled server when `npm start`
 * has one up, otherwise one started for the command and stopped after it.
 */
export async function withDatabase<T>(
  config: Config,
  logger: Logger,
  task: (db: Database) => Promise<T>,
): Promise<T> {
  const location = await locateDatabase(config, logger);
  try {
    await migrateDatabase(location.url);
    const handle = connectDatabase(location.url, { max: 2 });
    try {
      return await task(handle.db);
    } finally {
      await handle.close();
    }
  } finally {
    await location.stop();
  }
}
