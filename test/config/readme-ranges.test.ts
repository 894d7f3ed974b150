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

/**
 * Reads "A–B", "A or more", "at most B" and "V, or A–B" into the bounds they state, and the
 * single value V accepted besides them.
 */
function parseRange(range: string): { min?: number; max?: number; single?: number } {
  const singleOrBetween = /^(-?\d+), or (-?\d+)–(-?\d+)$/.exec(range);
  if (singleOrBetween) {
    const [single, min, max] = singleOrBetween.slice(1).map(Number);
    return { single, min, max };
  }
  const between = /^(-?\d+)–(-?\d+)$/.exec(range);
  if (between) return { min: Number(between[1]), max: Number(between[2]) };
  const orMore = /^(-?\d+) or more$/.exec(range);
  if (orMore) return { min: Number(orMore[1]) };
  const atMost = /^at most (-?\d+)$/.exec(range);
  if (atMost) return { max: Number(atMost[1]) };
  throw new Error(
    `invalid range "${range}" in README.md: write "A–B", "A or more", "at most B" or "V, or A–B"`,
  );
}

/** The numeric settings of the configuration, with their defaults, by name. */
const numericDefaults = Object.fromEntries(
  Object.entries(loadConfig({}) as unknown as Record<string, unknown>).filter(
    ([name, value]) => /^[A-Z_]+$/.test(name) && typeof value === 'number',
  ),
);

describe('README configuration ranges', () => {
  it('lists the numeric settings', () => {
    expect(Object.keys(numericDefaults).length).toBeGreaterThanOrEqual(20);
    expect(rows.map((row) => row.name).sort()).toEqual(Object.keys(numericDefaults).sort());
  });

  it.each(rows.map((row) => [row.name, row] as const))('%s states its default', (name, row) => {
    expect(row.defaultValue).toBe(numericDefaults[name]);
  });

  it.each(rows.map((row) => [row.name, row] as const))('%s states its range', (_name, row) => {
    expect(row.range).toBeDefined();
  });

  it.each(rows.filter((row) => row.range).map((row) => [row.name, row] as const))(
    '%s accepts its stated bounds',
    (name, row) => {
      const { min, max, single } = parseRange(row.range!);
      expect(load(name, row.defaultValue)).toBeNull();
      if (single !== undefined) {
        expect(load(name, single)).toBeNull();
        expect(load(name, single - 1)?.message).toContain(`Invalid ${name}`);
        expect(load(name, single + 1)?.message).toContain(`Invalid ${name}`);
      }
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

/** The rows of the README's configuration table, from its heading to the next one. */
const configurationSection = readme.slice(
  readme.indexOf('\n## Configuration\n'),
  readme.indexOf('\n## ', readme.indexOf('\n## Configuration\n') + 1),
);
const tableRows = configurationSection.split('\n').filter((line) => line.startsWith('| `'));

/** Returns the anchor that GitHub gives an ASCII markdown heading, such as "one-server-per-data_dir". */
function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, '')
    .replace(/ /g, '-');
}

describe('README configuration links', () => {
  const links = tableRows.flatMap((row) =>
    [...row.matchAll(/\]\((docs\/[a-z-]+\.md)(?:#([^)]+))?\)/g)].map((match) => ({
      setting: /^\| `([A-Z_]+)`/.exec(row)?.[1] ?? row.slice(0, 40),
      file: match[1]!,
      anchor: match[2],
    })),
  );

  it('has rows and links', () => {
    expect(tableRows.length).toBeGreaterThanOrEqual(40);
    expect(links.length).toBeGreaterThanOrEqual(10);
  });

  it.each(links.map((link) => [`${link.setting} -> ${link.file}#${link.anchor ?? ''}`, link] as const))(
    '%s resolves',
    (_label, link) => {
      const text = readFileSync(new URL(`../../${link.file}`, import.meta.url), 'utf8');
      if (link.anchor === undefined) return;
      const anchors = [...text.matchAll(/^#{1,6} (.+)$/gm)].map((match) => headingAnchor(match[1]!));
      expect(anchors).toContain(link.anchor);
    },
  );
});
