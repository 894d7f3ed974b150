import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env.ts';

/** A numeric setting's row of the README's configuration table. */
interface NumericRow {
  name: string;
  defaultValue: number;
  range: string | undefined;
}

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const rowPattern = /^\| `([A-Z_]+)` \| `(-?\d+)`(?: \(([^)]*)\))? \|/gm;
const rows: NumericRow[] = [...readme.matchAll(rowPattern)].map((match) => ({
  name: match[1]!,
  defaultValue: Number(match[2]),
  range: match[3],
}));

/** A hold long enough for every timeout setting, so only the value under test decides. */
const longHold = { RESERVATION_TTL_SECONDS: '86400' };

function load(name: string, value: number): ConfigError | null {
  const env = name === 'RESERVATION_TTL_SECONDS' ? {} : longHold;
  try {
    loadConfig({ ...env, [name]: String(value) });
    return null;
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

/** Reads "A–B", "A or more" and "at most B" into the bounds they state. */
function parseRange(range: string): { min?: number; max?: number } {
  const between = /^(-?\d+)–(-?\d+)$/.exec(range);
  if (between) return { min: Number(between[1]), max: Number(between[2]) };
  const orMore = /^(-?\d+) or more$/.exec(range);
  if (orMore) return { min: Number(orMore[1]) };
  const atMost = /^at most (-?\d+)$/.exec(range);
  if (atMost) return { max: Number(atMost[1]) };
  throw new Error(`invalid range "${range}" in README.md: write "A–B", "A or more" or "at most B"`);
}

describe('README configuration ranges', () => {
  it('lists the numeric settings', () => {
    expect(rows.length).toBeGreaterThanOrEqual(20);
    expect(rows.map((row) => row.name)).toContain('PORT');
  });

  it.each(rows.map((row) => [row.name, row] as const))('%s states its range', (_name, row) => {
    expect(row.range).toBeDefined();
  });

  it.each(rows.filter((row) => row.range).map((row) => [row.name, row] as const))(
    '%s accepts its stated bounds',
    (name, row) => {
      const { min, max } = parseRange(row.range!);
      expect(load(name, row.defaultValue)).toBeNull();
      if (min !== undefined) {
        expect(load(name, min)).toBeNull();
        expect(load(name, min - 1)?.message).toContain(`Invalid ${name}`);
      }
      if (max !== undefined) {
        expect(load(name, max)).toBeNull();
        expect(load(name, max + 1)?.message).toBe(
          `Invalid ${name}: must be at most ${max} (got "${max + 1}").`,
        );
      }
    },
  );
});
