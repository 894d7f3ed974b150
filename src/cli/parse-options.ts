import { parseArgs, type ParseArgsConfig } from 'node:util';
import { settingNames } from '../config/env.ts';
import { closestName } from '../text/closest-name.ts';
import { joinWithAnd } from '../text/plural.ts';
import { CommandError } from './command-error.ts';

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses `args` with node:util parseArgs in strict mode, which rejects unknown options and any
 * positional argument. An unknown option's error gets a "Did you mean" hint with the closest
 * name of `accepted` (by default every option in `options`). Raises CommandError for an option
 * given more than once, because parseArgs would keep only the last value. Returns the values
 * and the names of the options given, without the ones filled in from defaults.
 */
export function parseCommandOptions<T extends OptionsConfig>(
  command: string,
  args: string[],
  options: T,
  accepted: readonly string[] = Object.keys(options),
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, tokens: true, strict: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      addOptionSuggestion(error as Error, accepted);
    }
    throw error;
  }
  const { values, tokens } = parsed;
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
 * Settings that people often try to pass as options, with what each one chooses. Every
 * variable that the configuration reads gets a hint, and these ones a more specific one.
 */
const settingPurposes: Partial<Record<string, string>> = {
  PORT: 'the port',
  HOST: 'the listening address',
  DATABASE_URL: 'the database',
  LOG_LEVEL: 'how much is logged',
  PUBLIC_URL: 'the address in links',
};

/**
 * Returns the hint for an unknown option that names an environment variable of the
 * configuration (`--database-url` for DATABASE_URL), or null for any other option.
 */
export function settingHint(optionName: string): string | null {
  const variable = optionName.toUpperCase().replaceAll('-', '_');
  if (!settingNames.includes(variable)) return null;
  const purpose = settingPurposes[variable];
  return purpose ? `Set ${variable} to choose ${purpose}.` : `Set the environment variable ${variable} instead.`;
}

/**
 * Appends a hint to parseArgs' unknown-option error, whose message quotes the option as given
 * (`Unknown option '--pla'`): the environment variable to set when the option names one, or
 * else "Did you mean --NAME?" when an accepted option is close to it.
 */
function addOptionSuggestion(error: Error, accepted: readonly string[]): void {
  const optionName = /^Unknown option '-{1,2}([^'=]+)/.exec(error.message)?.[1];
  if (optionName === undefined) return;
  const message = error.message.replace(/\.?$/, '.');
  const hint = settingHint(optionName);
  if (hint !== null) {
    error.message = `${message} ${hint}`;
    return;
  }
  error.message = `${message}${suggestClosest(optionName, accepted, '--')}`;
}

/**
 * Returns " Did you mean NAME?" with the name of `accepted` closest to `name`, written after
 * `prefix` (such as "--" for an option), or an empty string when none is close. Used for
 * unknown options, commands and subcommands alike.
 */
export function suggestClosest(name: string, accepted: readonly string[], prefix = ''): string {
  const closest = closestName(name, accepted);
  return closest === null ? '' : ` Did you mean ${prefix}${closest}?`;
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
