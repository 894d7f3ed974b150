import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { findFreePort, startEmbeddedPostgres, type PostgresServer } from '../../src/db/bundled.ts';

/** An embedded PostgreSQL of one test that the test stops and starts again on the same data. */
export interface RestartablePostgres {
  /** URL of the server's database "postgres", the same after every restart. */
  url: string;
  /** Asks for a fast shutdown, which ends every session, and waits until the server exited. */
  stop(): Promise<void>;
  /** Starts the server again on the same data folder and port. */
  start(): Promise<void>;
  /** Stops the server and removes its data folder. */
  remove(): Promise<void>;
}

/**
 * Starts an embedded PostgreSQL in a new temporary folder, on a free port that it keeps across
 * restarts.
 * NOTE: another process could take the port while the server is stopped; start() then fails.
 */
export async function startRestartablePostgres(): Promise<RestartablePostgres> {
  const parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-restartable-'));
  // The postgres system user runs the server when the tests run as root.
  await chmod(parent, 0o755);
  const port = await findFreePort();
  const credentials = { user: 'fixwright', password: 'restartable-test-password' };
  let server: PostgresServer | undefined;
  const start = async () => {
    server = await startEmbeddedPostgres({
      clusterDir: path.join(parent, 'pg'),
      port,
      credentials,
      persistent: true,
      fast: true,
    });
  };
  const stop = async () => {
    await server?.stop();
  };
  await start();
  return {
    url: `postgres://${credentials.user}:${credentials.password}@127.0.0.1:${port}/postgres`,
    stop,
    start,
    remove: async () => {
      await stop();
      await rm(parent, { recursive: true, force: true });
    },
  };
}
