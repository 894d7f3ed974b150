import { ConfigError, loadConfig } from '../config/env.ts';
import { createLogger } from '../logger.ts';
import { findUsage, generalUsage, helpCommand } from './usage.ts';
import { CommandError, CommandFailedError } from './command-error.ts';
import { StartupError } from '../errors/startup-error.ts';
import { InterruptedError, releaseEarlySignalHandlers } from './stop-signals.ts';
import { suggestClosest } from './parse-options.ts';

const commands = ['start', 'migrate', 'receive', 'users', 'keys', 'demo'];

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'help' || command === '--help' || command === '-h') {
    console.log(generalUsage);
    return 0;
  }
  const choices = `use ${commands.slice(0, -1).join(', ')} or ${commands.at(-1)}`;
  if (!command) throw new CommandError(`Missing command: ${choices}.\n\n${generalUsage}`);
  // Checked before the configuration is read, so a typo is not reported as a missing setting.
  if (!commands.includes(command)) {
    const hint = suggestClosest(command, commands);
    throw new CommandError(`Unknown command ${JSON.stringify(command)}: ${choices}.${hint}\n\n${generalUsage}`);
  }

  // Checked before the configuration is read, so help works on a machine not yet configured.
  if (rest.some((arg) => arg === '--help' || arg === '-h')) {
    console.log(findUsage(command, rest));
    return 0;
  }

  // The demo builds the service's whole configuration itself and reads none of this one. It
  // is loaded on demand, so other commands do not load the fake servers.
  if (command === 'demo') {
    const { runDemoCommand } = await import('./demo.ts');
    // The demo installs its own signal handlers.
    releaseEarlySignalHandlers();
    return runDemoCommand(rest);
  }

  const config = loadConfig();
  // One-off commands print their result on stdout; their log keeps to warnings on stderr
  // unless LOG_LEVEL requests more detail than info.
  const quiet = command !== 'start' && ['info', 'warn'].includes(config.LOG_LEVEL);
  const logger = quiet
    ? createLogger('warn', process.stderr)
    : createLogger(config.LOG_LEVEL, command === 'start' ? undefined : process.stderr);
  // Each command's code is loaded on demand, because `start` loads the whole service and a
  // one-off command such as `users token` needs none of it.
  switch (command) {
    case 'start':
      return (await import('./start.ts')).runStartCommand(config, logger, rest);
    case 'migrate':
      return (await import('./migrate.ts')).runMigrateCommand(config, logger, rest);
    case 'receive': {
      const { runReceiveCommand } = await import('./receive.ts');
      // A delivery in progress may have reached the server, so no line claims that nothing changed.
      releaseEarlySignalHandlers();
      return runReceiveCommand(config, rest);
    }
    case 'users':
      return (await import('./users.ts')).runUsersCommand(config, logger, rest);
    case 'keys':
      return (await import('./keys.ts')).runKeysCommand(config, logger, rest);
    default:
      throw new Error(`Command ${JSON.stringify(command)} is listed but has no handler.`);
  }
}

try {
  const code = await main(process.argv.slice(2));
  if (code !== -1) process.exit(code);
} catch (error) {
  // The command logged the interruption when the signal arrived.
  if (error instanceof InterruptedError) process.exit(error.exitCode);
  if (error instanceof ConfigError || error instanceof CommandError) {
    console.error(error.message);
    process.exit(2);
  }
  if (error instanceof StartupError || error instanceof CommandFailedError) {
    console.error(error.message);
    process.exit(1);
  }
  // node:util parseArgs rejects unknown options and missing values with these codes.
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (code.startsWith('ERR_PARSE_ARGS_')) {
    const help = helpCommand(process.argv[2] ?? '', process.argv.slice(3));
    // A message that ends with a "Did you mean" question keeps its question mark.
    console.error(`${(error as Error).message.replace(/([.?])?$/, (end) => end || '.')} Run "${help}" for the options.`);
    process.exit(2);
  }
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
}
