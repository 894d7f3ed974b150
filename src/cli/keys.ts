import type { Config } from '../config/env.ts';
import type { Logger } from '../logger.ts';
import { CommandError } from './command-error.ts';

// TODO: re-encrypt stored provider keys under the newest master key once key storage exists.
export async function runKeysCommand(_config: Config, _logger: Logger, args: string[]): Promise<number> {
  throw new CommandError(`Unknown keys command ${JSON.stringify(args[0] ?? '')}.`);
}
