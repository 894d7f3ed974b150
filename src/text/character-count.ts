/**
 * Counts the characters of `text` as Unicode code points, the count that PostgreSQL's
 * char_length returns. An emoji such as U+1F600 counts as 1, although it takes two UTF-16 code
 * units in `text.length`. A character built from several code points, such as a flag or an
 * emoji with a skin tone, counts as several.
 */
export function countCharacters(text: string): number {
  let count = 0;
  for (const _character of text) count++;
  return count;
}
