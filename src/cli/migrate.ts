import { parseArgs } from 'node:util';
import type { Config } from '../config/env.ts';
import type { Logger } from '../logger.ts';
import { withDatabase } from './with-database.ts';

export async function runMigrateCommand(config: Config, logger: Logger, args: string[]): Promise<number> {
  // migrate takes no options or arguments, so parseArgs rejects any before the database is used.
  parseArgs({ args, options: {} });
  // withDatabase applies the migrations before it runs the task.
  return withDatabase(config, logger, async (_db, migration) => {
    if (migration.applied === 0 && migration.newerInDatabase > 0) {
      // The database.schema_newer warning on stderr gives the steps to take.
      console.log('No migration to apply: a newer Fixwright version migrated the database.');
    } else if (migration.applied === 0) {
      console.log('No migration to apply: the database is up to date.');
    } else {
      console.log(`Applied ${migration.applied} migration${migration.applied === 1 ? '' : 's'}.`);
    }
    return 0;
  }, { command: 'migrate', createDatabase: true });
}
