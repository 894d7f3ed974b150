import { parseArgs } from 'node:util';

/**
 * Reads a benchmark's string options, each with its default. `--help` prints `usage` and
 * exits 0, and an unknown option prints the error and `usage` and exits 2.
 */
export function readBenchOptions<Name extends string>(
  usage: string,
  defaults: Record<Name, string>,
): Record<Name, string> {
  const options = Object.fromEntries(
    Object.entries(defaults).map(([name, value]) => [name, { type: 'string', default: value }]),
  ) as Record<string, { type: 'string'; default: string }>;
  let parsed;
  try {
    parsed = parseArgs({ options: { ...options, help: { type: 'boolean', default: false } } });
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (parsed.values.help) {
    console.log(usage);
    process.exit(0);
  }
  return parsed.values as Record<Name, string>;
}

/** Parses a whole number from `minimum` to `maximum`, or prints `usage` and exits 2. */
export function wholeNumber(
  usage: string,
  name: string,
  text: string,
  minimum: number,
  maximum: number,
): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    console.error(
      `Invalid --${name} "${text}": expected a whole number from ${minimum} to ${maximum}.\n${usage}`,
    );
    process.exit(2);
  }
  return value;
}
