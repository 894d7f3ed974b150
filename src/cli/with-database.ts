import type { Config } from '../config/env.ts';
import { closeOnAbort, connectDatabase, type Database } from '../db/client.ts';
import { migrateDatabase, warnAboutNewerSchema, type MigrationOutcome } from '../db/migrate.ts';
import { checkBundledDatabaseExists, locateDatabase } from '../database.ts';
import type { Logger } from '../logger.ts';
import { handleStopSignals, InterruptedError } from './stop-signals.ts';

/** Options of withDatabase. */
export interface WithDatabaseOptions {
  /** The command, such as "users token", which the error of a missing database names. */
  command: string;
  /**
   * True to create a missing database, as `migrate` does: the bundled PostgreSQL in a DATA_DIR
   * without one, or the tables in a DATABASE_URL database that contains no Fixwright tables.
   * Otherwise withDatabase throws ConfigError and creates nothing, because a command run from
   * another folder than `npm start`, or with a mistyped DATABASE_URL, such as one naming the
   * `postgres` database, would otherwise change a new, empty database without a word.
   */
  createDatabase?: boolean;
}

/**
 * Applies the migrations and runs `task` against the configured database: the running
 * bundled server when `npm start` has one up, otherwise one started for the command and
 * stopped after it. `task` also gets what the migration did. With `createDatabase`, a new
 * bundled database gets the warning `command.database_created`. A SIGINT or SIGTERM meanwhile cancels the start of the bundled server or
 * closes the connections at once, stops the bundled server if this call started it, and then
 * rejects with InterruptedError. A second signal exits at once with status 1.
 */
export async function withDatabase<T>(
  config: Config,
  logger: Logger,
  task: (db: Database, migration: MigrationOutcome) => Promise<T>,
  options: WithDatabaseOptions,
): Promise<T> {
  const interruption = new AbortController();
  const removeHandlers = handleStopSignals(logger, 'command', (signal) => {
    logger.warn(
      { event: 'command.interrupted', signal },
      `interrupted by ${signal}; cancelling the database work`,
    );
    interruption.abort(new InterruptedError(signal));
  });
  try {
    let result: T;
    try {
      result = await runOnDatabase(config, logger, task, { ...options, signal: interruption.signal });
    } catch (error) {
      // A signal that arrived while the bundled server stopped after a failed task interrupted
      // the command too, so it exits with the signal's status rather than the task's error.
      interruption.signal.throwIfAborted();
      throw error;
    }
    // A signal that arrived while the bundled server stopped interrupted the command too.
    interruption.signal.throwIfAborted();
    return result;
  } finally {
    // An interrupted command exits next, and a second signal until then must still force the
    // exit: without these handlers, initdb's cleanup handler would raise it again and the
    // process would end by the signal instead of with status 1.
    if (!interruption.signal.aborted) removeHandlers();
  }
}

async function runOnDatabase<T>(
  config: Config,
  logger: Logger,
  task: (db: Database, migration: MigrationOutcome) => Promise<T>,
  options: WithDatabaseOptions & { signal: AbortSignal },
): Promise<T> {
  const { signal } = options;
  signal.throwIfAborted();
  if (!options.createDatabase) await checkBundledDatabaseExists(config, options.command);
  // When `signal` aborts, this stops a bundled server that it is starting, and rejects.
  const location = await locateDatabase(config, logger, { signal });
  if (location.createdIn) {
    // Without this warning, a `migrate` run outside the folder of `npm start` would set up a
    // second database without a word.
    logger.warn(
      { event: 'command.database_created', dataDir: location.createdIn },
      `DATA_DIR ${location.createdIn} had no database, so this command created a new one ` +
        'there. To work on the database that "npm start" uses, run the command with its ' +
        'DATA_DIR (the default is ./data in the current folder) or DATABASE_URL.',
    );
  }
  try {
    signal.throwIfAborted();
    const existingOnly = Boolean(config.DATABASE_URL) && !options.createDatabase;
    const migration = await migrateDatabase(location.url, { signal, existingOnly });
    warnAboutNewerSchema(logger, migration);
    signal.throwIfAborted();
    const handle = connectDatabase(location.url, { max: 2, logger });
    const removeCloseOnAbort = closeOnAbort(handle.sql, signal);
    try {
      return await task(handle.db, migration);
    } finally {
      removeCloseOnAbort();
      await handle.close();
    }
  } catch (error) {
    // After an interruption the task fails because its connections were closed.
    signal.throwIfAborted();
    throw error;
  } finally {
    // A failure to stop the bundled server replaces the interruption, so that it is reported.
    await location.stop();
  }
}
