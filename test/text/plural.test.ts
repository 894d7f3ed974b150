import { describe, expect, it } from 'vitest';
import { formatCount, joinWithAnd, joinWithOr, pickForm } from '../../src/text/plural.ts';

describe('plural helpers', () => {
  it('formats counts with the right noun', () => {
    expect(formatCount(0, 'key')).toBe('0 keys');
    expect(formatCount(1, 'key')).toBe('1 key');
    expect(formatCount(2, 'key')).toBe('2 keys');
    expect(formatCount(3, 'entry', 'entries')).toBe('3 entries');
  });

  it('picks the form for a count', () => {
    expect(pickForm(0, 'is', 'are')).toBe('are');
    expect(pickForm(1, 'is', 'are')).toBe('is');
    expect(pickForm(2, 'is', 'are')).toBe('are');
  });

  it('joins items with and', () => {
    expect(joinWithAnd([])).toBe('');
    expect(joinWithAnd(['a'])).toBe('a');
    expect(joinWithAnd(['a', 'b'])).toBe('a and b');
    expect(joinWithAnd(['a', 'b', 'c'])).toBe('a, b and c');
  });

  it('joins items with or', () => {
    expect(joinWithOr([])).toBe('');
    expect(joinWithOr(['a'])).toBe('a');
    expect(joinWithOr(['a', 'b'])).toBe('a or b');
    expect(joinWithOr(['a', 'b', 'c'])).toBe('a, b or c');
  });
});
