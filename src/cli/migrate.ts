import type { Config } from '../config/env.ts';
import type { Logger } from '../logger.ts';
import { withDatabase } from './with-database.ts';

export async function runMigrateCommand(config: Config, logger: Logger): Promise<number> {
  // withDatabase applies the migrations before it runs the task.
  return withDatabase(config, logger, async () => {
    console.log('Migrations applied.');
    return 0;
  });
}
