import { describe, expect, it } from 'vitest';
import { stripNulDeep } from '../../src/text/strip-nul.ts';

describe('stripNulDeep', () => {
  it('removes NUL at every level', () => {
    const value = { 'ti\u0000tle': 'a\u0000b', base: { ref: 'main\u0000' }, labels: ['x\u0000', 'y'], n: 1 };

    expect(stripNulDeep(value)).toEqual({ title: 'ab', base: { ref: 'main' }, labels: ['x', 'y'], n: 1 });
  });

  it('returns a value without NUL unchanged', () => {
    const value = { title: 'ab', base: { ref: 'main' }, labels: ['x'], closed_at: null };

    expect(stripNulDeep(value)).toBe(value);
  });
});
