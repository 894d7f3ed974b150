import { ConfigError } from '../config/env.ts';
import { probeListen } from '../net/probe-listen.ts';

/**
 * Checks that the bundled PostgreSQL can listen on `port` of 127.0.0.1 before it starts, so a
 * taken port stops the start with one line instead of PostgreSQL's log. Throws ConfigError.
 */
export async function checkBundledPostgresPort(port: number): Promise<void> {
  const error = await probeListen('127.0.0.1', port);
  if (!error) return;
  if (error.code === 'EADDRINUSE') {
    throw new ConfigError(
      `Port ${port} on 127.0.0.1 is already in use, so the bundled PostgreSQL cannot listen on it; ` +
        'set BUNDLED_POSTGRES_PORT to another port, or to 0 to pick a free one.',
    );
  }
  if (error.code === 'EACCES') {
    throw new ConfigError(
      `Port ${port} needs privileges this process lacks; set BUNDLED_POSTGRES_PORT to 1024 or ` +
        'above, or to 0 to pick a free one.',
    );
  }
  throw error;
}
