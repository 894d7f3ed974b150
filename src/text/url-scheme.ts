/**
 * Finds where the run of URL scheme characters (`[A-Za-z0-9+.-]`, RFC 3986) that ends at
 * `colonIndex` starts in `text`. It returns `colonIndex` when no scheme character comes before.
 *
 * Callers find each "://" with indexOf and walk back from it with this function, in place of a
 * pattern such as `[a-z][a-z0-9+.-]*:\/\/`. Such a pattern is tried at every letter of a long
 * run of scheme characters, and each try reads to the end of the run, so it takes quadratic time.
 * The run before one ":" ends at that ":", so the walks from different "://" never overlap, and
 * all of them together read the text about once.
 */
export function findSchemeRunStart(text: string, colonIndex: number): number {
  let start = colonIndex;
  while (start > 0 && isSchemeCharacter(text.charCodeAt(start - 1))) {
    start -= 1;
  }
  return start;
}

/** Tells whether the UTF-16 code unit `code` is an ASCII letter. */
export function isAsciiLetter(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
}

function isSchemeCharacter(code: number): boolean {
  const isDigit = code >= 48 && code <= 57;
  // "+", "-" and "."
  const isSymbol = code === 43 || code === 45 || code === 46;
  return isAsciiLetter(code) || isDigit || isSymbol;
}
