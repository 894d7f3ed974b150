import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { ConfigError, missingSettings, type Config } from './config/env.ts';
import type { AppContext } from './context.ts';
import { connectDatabase } from './db/client.ts';
import { startupLockId, withAdvisoryLock } from './db/advisory-lock.ts';
import { migrateDatabase } from './db/migrate.ts';
import { locateDatabase } from './database.ts';
import { createGitHubApp } from './github/app.ts';
import { startBoss, stopBoss } from './jobs/boss.ts';
import { createQueues, startWorkers } from './jobs/workers.ts';
import { loadKeyring } from './keys/master-keys.ts';
import type { Logger } from './logger.ts';
import { probeListen } from './net/probe-listen.ts';
import { applyAdminLogins } from './users/sync-admin-role.ts';
import { createApp } from './web/app.tsx';

export type Role = 'all' | 'web' | 'worker';

export interface RunningService {
  context: AppContext;
  /** The HTTP port, or undefined for the worker role. */
  port: number | undefined;
  stop(): Promise<void>;
}

/** Starts the database, migrations, job queue, workers and HTTP server for the given role. */
export async function startService(config: Config, logger: Logger, role: Role): Promise<RunningService> {
  // HOST and PORT first, and then the master key file, so that neither a bad address nor an
  // unreadable key file is found only after the database has started.
  if (role !== 'worker') await checkListenAddress(config);
  const keyring = await loadKeyring(config, logger);
  // The bundled PostgreSQL stops with the process that started it, so a second `start` on
  // the same DATA_DIR is rejected instead of reusing it.
  const database = await locateDatabase(config, logger, { exclusive: true });
  await migrateDatabase(database.url);
  const handle = connectDatabase(database.url);
  const rolesChanged = await applyAdminLogins(handle.db, config);
  if (rolesChanged > 0) {
    logger.info({ event: 'users.roles_synced', users: rolesChanged }, 'applied ADMIN_LOGINS to user roles');
  }
  const boss = await startBoss(database.url, logger, {
    maintenanceIntervalSeconds: config.JOB_MAINTENANCE_INTERVAL_SECONDS,
  });
  // pg-boss creates queue partitions without a lock of its own, and concurrent starts on a new
  // database deadlocked there. They take turns under the start-up lock instead.
  await withAdvisoryLock(database.url, startupLockId, () => createQueues(boss, config));

  const github = config.githubAppConfigured
    ? createGitHubApp({
        appId: config.APP_ID!,
        privateKey: config.privateKey!,
        baseUrl: config.GITHUB_API_URL,
        logger,
      })
    : null;
  const context: AppContext = { config, db: handle.db, boss, logger, github, keyring };

  const workers = role !== 'web' ? await startWorkers(context, database.url) : undefined;

  let server: ServerType | undefined;
  let port: number | undefined;
  if (role !== 'worker') {
    const app = createApp(context);
    server = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT });
    try {
      await new Promise<void>((resolve, reject) => {
        server!.once('listening', resolve);
        server!.once('error', reject);
      });
    } catch (error) {
      await stopBoss(boss, { graceful: false });
      await workers?.close();
      await handle.close();
      await database.stop();
      throw listenError(error as NodeJS.ErrnoException, config);
    }
    port = (server.address() as AddressInfo).port;
  }

  for (const line of missingSettings(config)) {
    logger.warn({ event: 'config.missing' }, line);
  }
  logger.info(
    { event: 'service.started', role, host: config.HOST, port, url: port ? `http://${config.HOST}:${port}` : undefined },
    'Fixwright started',
  );

  return {
    context,
    port,
    async stop() {
      if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
      // Workers and their connections end before PostgreSQL, which would otherwise
      // terminate those connections and pg-boss would log it as a job queue error.
      await stopBoss(boss, { graceful: true, timeoutMs: 20_000 });
      await workers?.close();
      await handle.close();
      await database.stop();
      logger.info({ event: 'service.stopped' }, 'Fixwright stopped');
    },
  };
}

/**
 * Binds HOST:PORT once and releases it, so an address this machine does not have or a port
 * in use stops the start before the database starts. Throws ConfigError.
 */
async function checkListenAddress(config: Config): Promise<void> {
  const error = await probeListen(config.HOST, config.PORT);
  if (error) throw listenError(error, config);
}

/** Turns a failure to listen into a configuration error that names the variable to change. */
function listenError(error: NodeJS.ErrnoException, config: Config): Error {
  if (error.code === 'EADDRINUSE') {
    return new ConfigError(
      `Port ${config.PORT} on ${config.HOST} is already in use; set PORT to a free port.`,
    );
  }
  if (error.code === 'ENOTFOUND' || error.code === 'EADDRNOTAVAIL' || error.code === 'EAI_AGAIN') {
    return new ConfigError(
      `Invalid HOST ${JSON.stringify(config.HOST)}: it is not an address of this machine; ` +
        'use 127.0.0.1, 0.0.0.0 or one of its interface addresses.',
    );
  }
  if (error.code === 'EACCES') {
    return new ConfigError(
      `Port ${config.PORT} needs privileges this process lacks; set PORT to 1024 or above.`,
    );
  }
  return error;
}
