import type { AddressInfo } from 'node:net';
import type { ServerType } from '@hono/node-server';
import { describeDoubtfulSettings } from './config/doubtful-settings.ts';
import { ConfigError, missingSettings, type Config } from './config/env.ts';
import type { AppContext } from './context.ts';
import { toSafeError } from './errors/safe-error.ts';
import { connectDatabase, type DatabaseHandle } from './db/client.ts';
import { startupLockId, withAdvisoryLock } from './db/advisory-lock.ts';
import { migrateDatabase, warnAboutNewerSchema } from './db/migrate.ts';
import { recordServiceSettings } from './usage/service-plan-limits.ts';
import { checkDataDirOpenToPostgres } from './db/postgres-user.ts';
import { locateDatabase, type DatabaseLocation } from './database.ts';
import { createGitHubApp } from './github/app.ts';
import { checkGitHubAtStart } from './github/startup-check.ts';
import { startBoss, stopBoss, type PgBoss } from './jobs/boss.ts';
import { createQueues, startWorkers } from './jobs/workers.ts';
import {
  findMasterKeyFiles,
  reportMasterKeyMismatches,
  reportMissingMasterKeyVersions,
} from './keys/master-key-check.ts';
import { logKeyFileUse, readKeyring, type Keyring, type UsedKeyFile } from './keys/master-keys.ts';
import type { Logger } from './logger.ts';
import { probeListen } from './net/probe-listen.ts';
import { httpOrigin } from './net/url-host.ts';
import { applyAdminLogins } from './users/sync-admin-role.ts';
import { createApp } from './web/app.tsx';
import { closeHttpServer, serveHttp } from './web/http-server.ts';

export type Role = 'all' | 'web' | 'worker';

export interface RunningService {
  context: AppContext;
  /** The HTTP port, or undefined for the worker role. */
  port: number | undefined;
  stop(): Promise<void>;
}

/**
 * Starts the database, migrations, job queue, workers and HTTP server for the given role. When
 * a step fails, or `signal` aborts, the parts started so far are stopped before this rejects,
 * with the error or with `signal.reason`. An abort takes effect when the running step ends,
 * except for the bundled PostgreSQL, which stops waiting for its start lock or for the server.
 * `onDatabaseExit` runs when the bundled PostgreSQL that this start started exits on its own.
 */
export async function startService(
  config: Config,
  logger: Logger,
  role: Role,
  options: { signal?: AbortSignal; onDatabaseExit?: () => void } = {},
): Promise<RunningService> {
  const { signal, onDatabaseExit } = options;
  checkRoleDatabase(config, role);
  // HOST and PORT first, and then the master key file, so that neither a bad address nor an
  // unreadable key file is found only after the database has started. The key file is created
  // in DATA_DIR, so a DATA_DIR that the bundled PostgreSQL cannot use is rejected before it.
  if (role !== 'worker') await checkListenAddress(config);
  if (!config.DATABASE_URL) await checkDataDirOpenToPostgres(config.dataDir);
  const { keyring, keyFile } = await readKeyring(config, logger);
  signal?.throwIfAborted();

  const parts: StartedParts = {};
  try {
    const port = await startParts(parts, { config, logger, role, keyring, keyFile, signal, onDatabaseExit });
    return {
      context: parts.context!,
      port,
      async stop() {
        await stopParts(parts, config, { graceful: true });
        logger.info({ event: 'service.stopped' }, 'Fixwright stopped');
      },
    };
  } catch (error) {
    if (signal?.aborted) {
      // An interrupted start stops like a running service, so jobs that workers took finish.
      // A failure to stop rejects with that failure instead of the reason.
      await stopParts(parts, config, { graceful: true });
      logger.info({ event: 'service.stopped' }, 'Fixwright stopped');
      throw signal.reason;
    }
    const stopping = stopParts(parts, config, { graceful: false });
    await stopping.catch((stopError: unknown) => {
      logger.error(
        { event: 'service.stop_failed', err: toSafeError(stopError) },
        'failed to stop the parts that had started before the start failed',
      );
    });
    throw error;
  }
}

/** Reason, per split role, that a process of that role cannot work on the bundled PostgreSQL. */
const missingPartner: Record<Exclude<Role, 'all'>, string> = {
  web: 'no worker process could run the jobs that this web process queues',
  worker: 'no web process could receive the webhooks and requests that queue jobs for this worker',
};

/**
 * Rejects the web and worker roles without DATABASE_URL. The bundled PostgreSQL accepts only
 * the process that started it, so a second process for the other role would be rejected.
 */
function checkRoleDatabase(config: Config, role: Role): void {
  if (role === 'all' || config.DATABASE_URL) return;
  throw new ConfigError(
    `Missing DATABASE_URL for --role ${role}: the bundled PostgreSQL serves only the process ` +
      `that starts it, so ${missingPartner[role]}. Set DATABASE_URL to a PostgreSQL that the ` +
      'web and worker processes share, or run "fixwright start" without --role to run the HTTP ' +
      'server and the job workers in one process.',
  );
}

/** The parts of the service that have started, which `stopParts` stops. */
interface StartedParts {
  database?: DatabaseLocation;
  handle?: DatabaseHandle;
  boss?: PgBoss;
  workers?: { close(): Promise<void> };
  server?: ServerType;
  context?: AppContext;
}

/**
 * Starts the parts in order and records each in `parts` as soon as it runs. Returns the HTTP
 * port. Throws `signal.reason` after the step during which `signal` aborted.
 */
async function startParts(
  parts: StartedParts,
  options: {
    config: Config;
    logger: Logger;
    role: Role;
    keyring: Keyring;
    keyFile: UsedKeyFile | null;
    signal?: AbortSignal;
    onDatabaseExit?: () => void;
  },
): Promise<number | undefined> {
  const { config, logger, role, keyring, keyFile, signal } = options;
  // The bundled PostgreSQL stops with the process that started it, so a second `start` on
  // the same DATA_DIR is rejected instead of reusing it.
  parts.database = await locateDatabase(config, logger, {
    exclusive: true,
    signal,
    onBundledServerExit: options.onDatabaseExit,
  });
  // Logged after the database is up, so that a start rejected because another process runs
  // the bundled PostgreSQL of DATA_DIR shows that error alone.
  if (keyFile) logKeyFileUse(logger, keyFile);
  signal?.throwIfAborted();
  const database = parts.database;
  warnAboutNewerSchema(logger, await migrateDatabase(database.url));
  signal?.throwIfAborted();
  const handle = connectDatabase(database.url, { logger });
  parts.handle = handle;
  // The `users` commands apply these limits and BILLING_PERIOD, whatever the environment of
  // their shell.
  await recordServiceSettings(handle.db, config);
  // A lost or replaced key file, or a mistyped MASTER_KEYS, shows at start rather than at the
  // first preview that needs a stored key. Until a restart, this process then uses no key of a
  // mismatched version, marks none unusable and encrypts under none.
  const keyFiles = findMasterKeyFiles(config);
  const mismatched = await reportMasterKeyMismatches(handle.db, keyring, logger, keyFiles.read, keyFiles.unread);
  keyring.markMismatched(mismatched);
  // Stored keys of a version this process lacks, such as after a rotation and a start without
  // MASTER_KEYS, are left out of previews, which the mismatch check above does not report.
  await reportMissingMasterKeyVersions(handle.db, keyring, logger, keyFiles);
  signal?.throwIfAborted();
  // Only processes that sign users in apply the list, so a worker started with an older or
  // shorter environment cannot demote the admins that the web processes were given.
  if (role !== 'worker') {
    const rolesChanged = await applyAdminLogins(handle.db, config);
    if (rolesChanged > 0) {
      logger.info({ event: 'users.roles_synced', users: rolesChanged }, 'applied ADMIN_LOGINS to user roles');
    }
  }
  signal?.throwIfAborted();
  const boss = await startBoss(database.url, logger, {
    maintenanceIntervalSeconds: config.JOB_MAINTENANCE_INTERVAL_SECONDS,
  });
  parts.boss = boss;
  signal?.throwIfAborted();
  // pg-boss creates queue partitions without a lock of its own, and concurrent starts on a new
  // database deadlocked there. They take turns under the start-up lock instead.
  await withAdvisoryLock(database.url, startupLockId, () => createQueues(boss, config, logger));
  signal?.throwIfAborted();

  const github = config.githubAppConfigured
    ? createGitHubApp({
        appId: config.APP_ID!,
        privateKey: config.privateKey!,
        baseUrl: config.GITHUB_API_URL,
        logger,
        totalTimeoutMs: config.GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS * 1000,
      })
    : null;
  const context: AppContext = { config, db: handle.db, boss, logger, github, keyring };
  parts.context = context;

  if (role !== 'web') {
    parts.workers = await startWorkers(context, database.url);
    signal?.throwIfAborted();
  }

  let port: number | undefined;
  if (role !== 'worker') {
    const app = createApp(context);
    const server = serveHttp(app.fetch, {
      hostname: config.HOST,
      port: config.PORT,
      requestTimeoutSeconds: config.REQUEST_TIMEOUT_SECONDS,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('listening', resolve);
        server.once('error', reject);
      });
    } catch (error) {
      throw listenError(error as NodeJS.ErrnoException, config);
    }
    parts.server = server;
    port = (server.address() as AddressInfo).port;
    signal?.throwIfAborted();
  }

  for (const line of missingSettings(config, { http: role !== 'worker' })) {
    logger.warn({ event: 'config.missing' }, line);
  }
  for (const line of config.deprecatedSettings) {
    logger.warn({ event: 'config.deprecated' }, line);
  }
  for (const line of describeDoubtfulSettings(config, { http: role !== 'worker' })) {
    logger.warn({ event: 'config.doubtful' }, line);
  }
  logger.info(
    {
      event: 'service.started',
      role,
      // A worker listens on no port, so it has no address to name.
      host: port === undefined ? undefined : config.HOST,
      port,
      url: port === undefined ? undefined : httpOrigin(config.HOST, port),
    },
    'Fixwright started',
  );
  // Not awaited: GitHub may be slow or down, and the service runs either way.
  if (github) void checkGitHubAtStart(github, config.GITHUB_API_URL, logger);
  return port;
}

/**
 * Stops the parts that have started, in the reverse order of their start. Requests in progress
 * get up to REQUEST_TIMEOUT_SECONDS, and a graceful stop lets running jobs finish for up to
 * SHUTDOWN_TIMEOUT_SECONDS. Every part gets its stop even when an earlier one fails, and the
 * first failure is thrown at the end.
 */
async function stopParts(
  parts: StartedParts,
  config: Config,
  options: { graceful: boolean },
): Promise<void> {
  const { server, boss, workers, handle, database } = parts;
  const timeoutMs = config.SHUTDOWN_TIMEOUT_SECONDS * 1000;
  const steps: (() => Promise<void>)[] = [
    async () => {
      if (server) await closeHttpServer(server, config.REQUEST_TIMEOUT_SECONDS * 1000);
    },
    // Workers and their connections end before PostgreSQL, which would otherwise
    // terminate those connections and pg-boss would log it as a job queue error.
    async () => {
      if (boss) await stopBoss(boss, { graceful: options.graceful, timeoutMs });
    },
    async () => workers?.close(),
    async () => handle?.close(),
    async () => database?.stop(),
  ];
  let firstError: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      firstError ??= error;
    }
  }
  if (firstError !== undefined) throw firstError;
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
