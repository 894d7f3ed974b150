import { describe, expect, it } from 'vitest';
import { countCharacters } from '../../src/text/character-count.ts';
import { shortenText } from '../../src/text/quote-value.ts';

describe('countCharacters', () => {
  it.each([
    ['', 0],
    ['ci', 2],
    ['é', 1],
    ['\u{1F600}', 1],
    ['\u{1F600}'.repeat(100), 100],
    // A flag is two regional indicator code points.
    ['\u{1F1E9}\u{1F1EA}', 2],
  ])('counts %j as %d', (text, expected) => {
    expect(countCharacters(text)).toBe(expected);
  });
});

describe('shortenText', () => {
  it('keeps text within the length', () => {
    expect(shortenText('abc', 3)).toBe('abc');
  });

  it('ends shortened text with an ellipsis', () => {
    expect(shortenText('abcdef', 4)).toBe('abc…');
  });

  it('keeps a surrogate pair whole', () => {
    // 'a' and two emoji are 5 UTF-16 code units, and a cut after 4 would split the second.
    expect(shortenText('a\u{1F600}\u{1F601}', 5)).toBe('a\u{1F600}\u{1F601}');
    expect(shortenText('a\u{1F600}\u{1F601}b', 5)).toBe('a\u{1F600}…');
    expect(shortenText('ab\u{1F600}\u{1F601}', 5)).toBe('ab\u{1F600}…');
  });
});
