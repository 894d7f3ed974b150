import { parseArgs } from 'node:util';
import type { Config } from '../config/env.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';
import { startService, type Role } from '../server.ts';
import { CommandError } from './command-error.ts';

const roles: Role[] = ['all', 'web', 'worker'];

/** Runs until SIGINT or SIGTERM; returns -1 so main leaves the process running. */
export async function runStartCommand(config: Config, logger: Logger, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { role: { type: 'string', default: 'all' } } });
  const role = values.role as Role;
  if (!roles.includes(role)) {
    throw new CommandError(`Invalid --role ${JSON.stringify(values.role)}: use all, web or worker.`);
  }

  const service = await startService(config, logger, role);
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ event: 'service.forced_exit', signal }, 'second signal; exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ event: 'service.stopping', signal }, 'stopping');
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ event: 'service.stop_failed', err: toSafeError(error) }, 'stopping failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  return -1;
}
