import type { Config } from '../config/env.ts';
import { migrateDatabase } from '../db/migrate.ts';
import { locateDatabase } from '../database.ts';
import type { Logger } from '../logger.ts';

export async function runMigrateCommand(config: Config, logger: Logger): Promise<number> {
  const database = await locateDatabase(config, logger);
  try {
    await migrateDatabase(database.url);
    console.log('Migrations applied.');
    return 0;
  } finally {
    await database.stop();
  }
}
