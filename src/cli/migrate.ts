import { parseArgs } from 'node:util';
import type { Config } from '../config/env.ts';
import type { Logger } from '../logger.ts';
import { withDatabase } from './with-database.ts';

export async function runMigrateCommand(config: Config, logger: Logger, args: string[]): Promise<number> {
  // migrate takes no options or arguments, so parseArgs rejects any before the database is used.
  parseArgs({ args, options: {} });
  // withDatabase applies the migrations before it runs the task.
  return withDatabase(config, logger, async () => {
    console.log('Migrations applied.');
    return 0;
  });
}
