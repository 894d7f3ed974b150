import { parseArgs, type ParseArgsConfig } from 'node:util';
import { joinWithAnd } from '../text/plural.ts';
import { CommandError } from './command-error.ts';

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses `args` with node:util parseArgs in strict mode, which rejects unknown options and any
 * positional argument. Raises CommandError for an option given more than once, because
 * parseArgs would keep only the last value. Returns the values and the names of the options
 * given, without the ones filled in from defaults.
 */
export function parseCommandOptions<T extends OptionsConfig>(command: string, args: string[], options: T) {
  const { values, tokens } = parseArgs({ args, options, tokens: true, strict: true });
  const suppliedOptions = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    if (suppliedOptions.has(token.name)) {
      throw new CommandError(`Repeated option --${token.name} for ${command}: give it once.`);
    }
    suppliedOptions.add(token.name);
  }
  return { values, suppliedOptions };
}

/**
 * Parses a whole number written in decimal digits, or returns null. Number() alone would also
 * take `1e3`, `0x10`, `0b1`, spaces and an empty string.
 */
export function parseDecimal(text: string): number | null {
  return /^[0-9]+$/.test(text) ? Number(text) : null;
}

/** Raises a usage error naming the first supplied option that the subcommand does not take. */
export function rejectOtherOptions(command: string, supplied: Iterable<string>, accepted: readonly string[]): void {
  for (const name of supplied) {
    if (accepted.includes(name)) continue;
    const list = accepted.map((option) => `--${option}`);
    throw new CommandError(`Invalid option --${name} for ${command}: it takes only ${joinWithAnd(list)}.`);
  }
}
