import { describe, expect, it } from 'vitest';
import {
  describeInvisibleCharacter,
  invisibleCharacterPattern,
  showCodePoints,
  splitInvisibleCharacters,
} from '../../src/text/invisible-characters.ts';

describe('invisible characters', () => {
  it('splits text around each character', () => {
    expect(splitInvisibleCharacters('a\u202Eb\u2066\u2069')).toEqual([
      'a',
      { codePoint: 'U+202E', description: 'U+202E RIGHT-TO-LEFT OVERRIDE' },
      'b',
      { codePoint: 'U+2066', description: 'U+2066 LEFT-TO-RIGHT ISOLATE' },
      { codePoint: 'U+2069', description: 'U+2069 POP DIRECTIONAL ISOLATE' },
    ]);
  });

  it('returns plain text as one part', () => {
    expect(splitInvisibleCharacters('const a = 1;')).toEqual(['const a = 1;']);
    expect(splitInvisibleCharacters('')).toEqual([]);
  });

  it('marks every bidi control of CVE-2021-42574', () => {
    const controls = [0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069];
    for (const code of controls) {
      const character = String.fromCodePoint(code);
      expect(showCodePoints(`x${character}y`), character).toBe(
        `x<U+${code.toString(16).toUpperCase().padStart(4, '0')}>y`,
      );
    }
  });

  it('names control characters generically', () => {
    expect(describeInvisibleCharacter('\u001b')).toEqual({
      codePoint: 'U+001B',
      description: 'U+001B control character',
    });
    expect(showCodePoints('\u0000\u007f\u0085')).toBe('<U+0000><U+007F><U+0085>');
  });

  it('leaves tabs, line breaks, joiners and letters alone', () => {
    const text = 'a\tb\nc\r\nd \u200C\u200D \u00E9 \u05D0 \u0627 \u{1F468}\u200D\u{1F4BB}';
    expect(showCodePoints(text)).toBe(text);
    expect(splitInvisibleCharacters(text)).toEqual([text]);
  });

  it('sends a pattern of ASCII text', () => {
    expect(invisibleCharacterPattern).toMatch(/^[\x20-\x7E]+$/);
    expect(new RegExp(invisibleCharacterPattern).test('\uFEFF')).toBe(true);
  });
});
