import { describe, expect, it } from 'vitest';
import { modelUsage, readableUsage, tokenCount } from '../../src/llm/usage.ts';

describe('tokenCount', () => {
  it.each([
    [120, 120],
    [0, 0],
    [-5, 0],
    [2.2, 0],
    [1.5, 0],
    [Number.NaN, 0],
    [Number.POSITIVE_INFINITY, 0],
    ['120', 0],
    ['12', 0],
    [null, 0],
    [undefined, 0],
    [2 ** 40, 2 ** 31 - 1],
  ])('reads %s as %s', (value, expected) => {
    expect(tokenCount(value)).toBe(expected);
  });
});

describe('modelUsage', () => {
  it('keeps the provider total', () => {
    expect(modelUsage(10, 5, 40)).toEqual({ promptTokens: 10, completionTokens: 5, totalTokens: 40 });
  });

  it('adds prompt and completion when the total is missing', () => {
    expect(modelUsage(10, 5, undefined)).toEqual({
      promptTokens: 10,
      completionTokens: 5,
      totalTokens: 15,
    });
  });

  it.each([-100, Number.NaN, '40', 0, 1, 14])('replaces the malformed total %s by the sum', (total) => {
    expect(modelUsage(10, 5, total).totalTokens).toBe(15);
  });
});

describe('readableUsage', () => {
  it('reads counts that are not whole numbers as missing', () => {
    expect(readableUsage('12', 1.5, undefined)).toBeUndefined();
    expect(readableUsage(-1, '3', 0.5)).toBeUndefined();
  });

  it('keeps the valid counts of a mixed block', () => {
    expect(readableUsage('12', 7, undefined)).toEqual({
      promptTokens: 0,
      completionTokens: 7,
      totalTokens: 7,
    });
  });
});
