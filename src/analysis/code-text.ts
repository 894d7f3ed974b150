import { maxStepChars, type Steps } from './steps.ts';

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
  const scan = new CodePartScan(text, syntax);
  scan.read(text.length);
  return scan.parts.join('');
}

/** Returns `codePart(text, syntax)`, reading `maxStepChars` characters of the line per step. */
export function* codePartSteps(text: string, syntax: CommentSyntax): Steps<string> {
  const scan = new CodePartScan(text, syntax);
  for (;;) {
    scan.read(maxStepChars);
    if (scan.done) {
      return scan.parts.join('');
    }
    yield;
  }
}

/**
 * The state of `codePart` between two parts of a line. The code is kept as parts: slices of the
 * line outside string literals and runs of spaces for their contents, so that building it does
 * not append one character at a time.
 */
class CodePartScan {
  readonly parts: string[] = [];
  done = false;
  private index = 0;
  private quote: string | undefined;
  // Spaces that stand for the string literal contents read so far.
  private spaces = 0;

  constructor(
    private readonly text: string,
    private readonly syntax: CommentSyntax,
  ) {}

  /** Reads at least `chars` more characters of the line, or up to its end or its comment. */
  read(chars: number): void {
    const text = this.text;
    const stop = Math.min(text.length, this.index + chars);
    let quote = this.quote;
    let spaces = this.spaces;
    let index = this.index;
    // The start of the text that the code copies as it is.
    let copyStart = index;

    for (; index < stop; index += 1) {
      const char = text.charAt(index);

      if (quote !== undefined) {
        if (char === '\\') {
          // The backslash and the character it escapes both become spaces.
          spaces += index + 1 < text.length ? 2 : 1;
          index += 1;
          continue;
        }
        if (char === quote) {
          quote = undefined;
          this.parts.push(' '.repeat(spaces));
          spaces = 0;
          copyStart = index;
        } else {
          spaces += 1;
        }
        continue;
      }

      const next = text.charAt(index + 1);
      const startsComment =
        this.syntax === 'hash' ? char === '#' : char === '/' && (next === '/' || next === '*');
      if (startsComment) {
        this.done = true;
        break;
      }
      if (char === '"' || char === "'" || char === '`') {
        quote = char;
        // The opening quote stays in the code, and its contents become spaces.
        this.parts.push(text.slice(copyStart, index + 1));
      }
    }

    // Inside a string literal, its spaces so far are pushed when it closes or the line ends.
    if (quote === undefined) {
      this.parts.push(text.slice(copyStart, index));
    }
    this.quote = quote;
    this.spaces = spaces;
    this.index = index;
    if (index >= text.length) {
      this.done = true;
    }
    if (this.done && quote !== undefined) {
      this.parts.push(' '.repeat(spaces));
    }
  }
}
