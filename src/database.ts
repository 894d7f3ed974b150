import type { Config } from './config/env.ts';
import { openBundledPostgres } from './db/bundled.ts';
import type { Logger } from './logger.ts';

export interface DatabaseLocation {
  url: string;
  /** Stops the bundled PostgreSQL when this process started it; otherwise does nothing. */
  stop(): Promise<void>;
}

/** Uses DATABASE_URL when set, otherwise the bundled PostgreSQL in DATA_DIR. */
export async function locateDatabase(config: Config, logger: Logger): Promise<DatabaseLocation> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, stop: async () => {} };
  const bundled = await openBundledPostgres({
    dataDir: config.dataDir,
    port: config.BUNDLED_POSTGRES_PORT,
    logger,
  });
  return { url: bundled.url, stop: () => bundled.stop() };
}
