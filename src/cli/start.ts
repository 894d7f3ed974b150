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
 * then this returns 128 plus the signal number (130 for SIGINT, 143 for SIGTERM).
 */
export async function runStartCommand(config: Config, logger: Logger, args: string[]): Promise<number> {
  const { values } = parseCommandOptions('start', args, { role: { type: 'string', default: 'all' } });
  const role = values.role as Role;
  if (!roles.includes(role)) {
    throw new CommandError(`Invalid --role ${JSON.stringify(values.role)}: use all, web or worker.`);
  }

  const interruption = new AbortController();
  let service: RunningService | undefined;
  handleStopSignals(logger, 'service', (signal) => {
    if (!service) {
      logger.warn(
        { event: 'service.start_interrupted', signal },
        `start interrupted by ${signal}; stopping what has started`,
      );
      interruption.abort(new InterruptedError(signal));
      return;
    }
    logger.info({ event: 'service.stopping', signal }, 'stopping');
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ event: 'service.stop_failed', err: toSafeError(error) }, 'stopping failed');
        process.exit(1);
      },
    );
  });

  try {
    service = await startService(config, logger, role, { signal: interruption.signal });
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
  return -1;
}
