/** The comment syntax of a language family: `//` and block comments, or `#` comments. */
export type CommentSyntax = 'c-like' | 'hash';

const JAVASCRIPT_LIKE = /\.(?:js|jsx|ts|tsx|mjs|cjs|mts|cts|vue|svelte)$/i;

export function isJavaScriptLike(path: string): boolean {
  return JAVASCRIPT_LIKE.test(path);
}

export function isPython(path: string): boolean {
  return /\.py$/i.test(path);
}

/** Tells whether the whole line is a comment, including a `*` line inside a block comment. */
export function isCommentLine(text: string, syntax: CommentSyntax): boolean {
  const trimmed = text.trimStart();
  if (syntax === 'hash') {
    return trimmed.startsWith('#');
  }
  return trimmed.startsWith('//') || trimmed.startsWith('/*') || trimmed.startsWith('*');
}

/**
 * Returns the code part of one line: string literal contents become spaces and a trailing
 * comment is cut off, so a pattern matched against the result only finds real code. Indexes up
 * to the comment stay valid. The scan reads one line at a time, so it cannot tell that a line sits
 * inside a multi-line string or block comment.
 */
export function codePart(text: string, syntax: CommentSyntax): string {
  let code = '';
  let quote: string | undefined;

  for (let index = 0; index < text.length; index += 1) {
    const char = text.charAt(index);

    if (quote !== undefined) {
      if (char === '\\') {
        // The backslash and the character it escapes both become spaces.
        code += index + 1 < text.length ? '  ' : ' ';
        index += 1;
        continue;
      }
      if (char === quote) {
        quote = undefined;
        code += char;
        continue;
      }
      code += ' ';
      continue;
    }

    const pair = text.slice(index, index + 2);
    const startsComment = syntax === 'hash' ? char === '#' : pair === '//' || pair === '/*';
    if (startsComment) {
      break;
    }
    if (char === '"' || char === "'" || char === '`') {
      quote = char;
    }
    code += char;
  }
  return code;
}
