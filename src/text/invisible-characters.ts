/**
 * Characters that text from a pull request or a model may contain, but that a reader cannot
 * see, or that change the order in which the text around them is displayed. The summary comment
 * and the dashboard show each as its code point, such as U+202E.
 *
 * - The Unicode bidirectional formatting characters (U+061C, U+200E, U+200F, U+202A–U+202E,
 *   U+2066–U+2069). An override such as U+202E displays the text after it reversed, so a line
 *   of code can read differently from how a compiler reads it ("Trojan Source",
 *   CVE-2021-42574).
 * - Zero width space (U+200B), word joiner (U+2060) and zero width no-break space or byte order
 *   mark (U+FEFF), which are invisible and can split a word or an identifier unnoticed.
 * - Line separator (U+2028) and paragraph separator (U+2029), which JavaScript reads as line
 *   ends and most other languages do not.
 * - C0 and C1 control characters and DEL, other than tab, line feed and carriage return, which
 *   text and code use.
 *
 * Zero width joiner and non-joiner (U+200D, U+200C) are left out, because emoji sequences and
 * scripts such as Persian and Devanagari need them.
 */
const invisibleCharacterClass =
  '\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u061C\\u200B\\u200E\\u200F' +
  '\\u2028\\u2029\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF';

/**
 * The pattern of one invisible character, as RegExp source, with `\u` escapes only, so that it
 * can be sent to the browser in an HTML attribute.
 */
export const invisibleCharacterPattern = `[${invisibleCharacterClass}]`;

/** Unicode names of the invisible characters that are not C0 or C1 control characters. */
export const invisibleCharacterNames: Readonly<Record<string, string>> = {
  '061C': 'ARABIC LETTER MARK',
  '200B': 'ZERO WIDTH SPACE',
  '200E': 'LEFT-TO-RIGHT MARK',
  '200F': 'RIGHT-TO-LEFT MARK',
  '2028': 'LINE SEPARATOR',
  '2029': 'PARAGRAPH SEPARATOR',
  '202A': 'LEFT-TO-RIGHT EMBEDDING',
  '202B': 'RIGHT-TO-LEFT EMBEDDING',
  '202C': 'POP DIRECTIONAL FORMATTING',
  '202D': 'LEFT-TO-RIGHT OVERRIDE',
  '202E': 'RIGHT-TO-LEFT OVERRIDE',
  '2060': 'WORD JOINER',
  '2066': 'LEFT-TO-RIGHT ISOLATE',
  '2067': 'RIGHT-TO-LEFT ISOLATE',
  '2068': 'FIRST STRONG ISOLATE',
  '2069': 'POP DIRECTIONAL ISOLATE',
  FEFF: 'ZERO WIDTH NO-BREAK SPACE',
};

/** Splits text around invisible characters. The capture group keeps them in the result. */
const splitPattern = new RegExp(`(${invisibleCharacterPattern})`);

const globalPattern = new RegExp(invisibleCharacterPattern, 'g');

/** An invisible character of a text, as the dashboard shows it. */
export interface InvisibleCharacter {
  /** The code point, such as "U+202E". */
  codePoint: string;
  /** The code point with the character's Unicode name, or "control character" for C0 and C1. */
  description: string;
}

function hexOf(character: string): string {
  return character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
}

/** Describes one invisible character, such as "U+202E RIGHT-TO-LEFT OVERRIDE". */
export function describeInvisibleCharacter(character: string): InvisibleCharacter {
  const hex = hexOf(character);
  return { codePoint: `U+${hex}`, description: `U+${hex} ${invisibleCharacterNames[hex] ?? 'control character'}` };
}

/**
 * Replaces each invisible character with its code point in angle brackets, such as `<U+202E>`,
 * for text that cannot contain markup, such as markdown in a code span or an HTML attribute.
 */
export function showCodePoints(text: string): string {
  return text.replace(globalPattern, (character) => `<U+${hexOf(character)}>`);
}

/**
 * Splits `text` into its runs of visible text and its invisible characters, in order. Text
 * without invisible characters comes back as one string.
 */
export function splitInvisibleCharacters(text: string): (string | InvisibleCharacter)[] {
  return text
    .split(splitPattern)
    .map((part, index) => (index % 2 === 1 ? describeInvisibleCharacter(part) : part))
    .filter((part) => part !== '');
}
