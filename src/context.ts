import type { Config } from './config/env.ts';
import type { Database } from './db/client.ts';
import type { GitHubApp } from './github/app.ts';
import type { PgBoss } from './jobs/boss.ts';
import type { Keyring } from './keys/master-keys.ts';
import type { Logger } from './logger.ts';

/** Shared state of request and job handlers: configuration, database, queue and clients. */
export interface AppContext {
  config: Config;
  db: Database;
  boss: PgBoss;
  logger: Logger;
  /** Null until APP_ID and a private key are configured. */
  github: GitHubApp | null;
  /** Master keys that encrypt users' own provider keys; may be empty, see `unavailableReason`. */
  keyring: Keyring;
}
