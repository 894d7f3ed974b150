import type { Config } from '../config/env.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';
import { startService, type Role, type RunningService } from '../server.ts';
import { CommandError } from './command-error.ts';
import { parseCommandOptions } from './parse-options.ts';
import { handleStopSignals, InterruptedError } from './stop-signals.ts';

const roles: Role[] = ['all', 'web', 'worker'];

/**
 * Runs until SIGINT or SIGTERM, and returns -1 so main leaves the process running. The handlers
 * are installed before the start, so a signal during it stops what has started so far, and
 * then this returns 128 plus the signal number (130 for SIGINT, 143 for SIGTERM). A bundled
 * PostgreSQL that exits on its own stops the service, which then exits with status 1.
 */
export async function runStartCommand(config: Config, logger: Logger, args: string[]): Promise<number> {
  const { values } = parseCommandOptions('start', args, { role: { type: 'string', default: 'all' } });
  const role = values.role as Role;
  if (!roles.includes(role)) {
    throw new CommandError(`Invalid --role ${JSON.stringify(values.role)}: use all, web or worker.`);
  }
  exitOnUnhandledRejection(logger);

  const interruption = new AbortController();
  let service: RunningService | undefined;
  let stopping = false;
  const stopAndExit = (exitCode: number) => {
    stopping = true;
    service!.stop().then(
      () => process.exit(exitCode),
      (error: unknown) => {
        logger.error({ event: 'service.stop_failed', err: toSafeError(error) }, 'stopping failed');
        process.exit(1);
      },
    );
  };
  handleStopSignals(logger, 'service', (signal) => {
    if (!service) {
      logger.warn(
        { event: 'service.start_interrupted', signal },
        `start interrupted by ${signal}; stopping what has started`,
      );
      interruption.abort(new InterruptedError(signal));
      return;
    }
    if (stopping) {
      logger.info({ event: 'service.signal_ignored', signal }, 'the service is stopping already');
      return;
    }
    logger.info({ event: 'service.stopping', signal }, 'stopping');
    stopAndExit(0);
  });

  // Only this process may start the bundled PostgreSQL on its DATA_DIR while it runs, so the
  // database cannot come back until it exits. A supervisor that restarts it starts the server
  // again.
  let databaseExited = false;
  const stopAfterDatabaseExit = () => {
    logger.error(
      { event: 'service.stopping', reason: 'bundled_postgres_exited' },
      'stopping because the bundled PostgreSQL exited; Fixwright exits with status 1 once ' +
        'stopped, and its next start starts the server again',
    );
    stopAndExit(1);
  };
  const onDatabaseExit = () => {
    databaseExited = true;
    if (service && !stopping) stopAfterDatabaseExit();
  };

  try {
    service = await startService(config, logger, role, { signal: interruption.signal, onDatabaseExit });
  } catch (error) {
    if (error instanceof InterruptedError) return error.exitCode;
    if (interruption.signal.aborted) {
      logger.error(
        { event: 'service.stop_failed', err: toSafeError(error) },
        'stopping after the interrupted start failed',
      );
      return 1;
    }
    throw error;
  }
  if (databaseExited && !stopping) stopAfterDatabaseExit();
  return -1;
}

/**
 * Logs an unhandled promise rejection as `process.unhandled_rejection` at fatal level and exits
 * with status 1, as Node.js would without the line. The state that the rejected operation left
 * is unknown, so the process does not run on. A bundled PostgreSQL gets a fast shutdown
 * request on the way out.
 */
function exitOnUnhandledRejection(logger: Logger): void {
  process.on('unhandledRejection', (reason) => {
    logger.fatal(
      { event: 'process.unhandled_rejection', err: toSafeError(reason) },
      'unhandled promise rejection; exiting with status 1',
    );
    process.exit(1);
  });
}
