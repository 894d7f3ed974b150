import { stat } from 'node:fs/promises';
import path from 'node:path';
import { rejectDataDirFile } from './config/data-dir.ts';
import { ConfigError, type Config } from './config/env.ts';
import { openBundledPostgres } from './db/bundled.ts';
import { checkDatabaseUrl } from './db/check-connection.ts';
import type { Logger } from './logger.ts';

export interface DatabaseLocation {
  url: string;
  /** The bundled PostgreSQL's data folder when this call created it, otherwise null. */
  createdIn: string | null;
  /** Stops the bundled PostgreSQL when this process started it; otherwise does nothing. */
  stop(): Promise<void>;
}

/**
 * Uses DATABASE_URL when set, otherwise the bundled PostgreSQL in DATA_DIR, after checking that
 * it accepts a connection unless this call started it. With `exclusive`, as `start` requests,
 * a bundled server that another live process runs is rejected with StartupError instead of
 * reused, because it stops when that process stops. `signal` is passed on to
 * openBundledPostgres, and `onBundledServerExit` runs when a bundled server that this call
 * started exits on its own.
 */
export async function locateDatabase(
  config: Config,
  logger: Logger,
  options: { exclusive?: boolean; signal?: AbortSignal; onBundledServerExit?: () => void } = {},
): Promise<DatabaseLocation> {
  if (config.DATABASE_URL) {
    await checkDatabaseUrl(config.DATABASE_URL);
    return { url: config.DATABASE_URL, createdIn: null, stop: async () => {} };
  }
  const bundled = await openBundledPostgres({
    dataDir: config.dataDir,
    port: config.BUNDLED_POSTGRES_PORT,
    logger,
    exclusive: options.exclusive,
    signal: options.signal,
    onExit: options.onBundledServerExit,
  });
  // A server that another process runs may be shutting down, and then rejects connections.
  // NOTE: a shutdown that begins after this check fails the command with PostgreSQL's error.
  if (!bundled.owned) await checkDatabaseUrl(bundled.url, 'the bundled PostgreSQL');
  return {
    url: bundled.url,
    createdIn: bundled.created ? config.dataDir : null,
    stop: () => bundled.stop(),
  };
}

/**
 * Throws ConfigError when DATABASE_URL is unset and DATA_DIR contains no bundled PostgreSQL.
 * `command` works on the database of an existing service, so it must create nothing in the
 * DATA_DIR of another folder. A cluster that this user may not read counts as present, and the
 * steps that open it report the error.
 */
export async function checkBundledDatabaseExists(config: Config, command: string): Promise<void> {
  if (config.DATABASE_URL) return;
  // initdb writes PG_VERSION into every cluster it creates.
  const versionFile = path.join(config.dataDir, 'postgres', 'PG_VERSION');
  try {
    await stat(versionFile);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') return;
    // A DATA_DIR that is a file gets no advice to run migrate, which would fail on it too.
    if (code === 'ENOTDIR') await rejectDataDirFile(config.dataDir);
    throw new ConfigError(
      `No Fixwright database in DATA_DIR ${config.dataDir}, and "fixwright ${command}" does not ` +
        'create one. Run it from the folder where you run "npm start" (DATA_DIR defaults to ' +
        './data in the current folder), or set DATA_DIR to the data folder of that service or ' +
        `DATABASE_URL to its database. To set up a new database in ${config.dataDir}, run ` +
        '"npx fixwright migrate" with this DATA_DIR first.',
    );
  }
}
