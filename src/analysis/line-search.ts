import { StepMeter, type Steps } from './steps.ts';

/**
 * Characters of one line that a search reads between two yields. A line up to this length is
 * searched in one piece, with the plain regular expression.
 */
export const searchWindowChars = 16_384;

/**
 * A regular expression prepared for a search in steps. `search` alone defines the result: the
 * other two only find the same matches in bounded steps.
 */
export interface SteppedPattern {
  /** The pattern with the global flag. It must not match the empty string. */
  search: RegExp;
  /** `search` with the sticky flag instead, tried on the whole line at each candidate. */
  sticky: RegExp;
  /**
   * A global pattern that matches wherever `search` can start a match, in at most
   * `candidateLength` characters. It may use a lookbehind or `^` but no lookahead, `\b` or `$`,
   * because the search cuts the line after each window.
   */
  candidates: RegExp;
  candidateLength: number;
}

/**
 * Prepares `pattern` for `findSteps`, with `candidates`, a pattern that matches wherever
 * `pattern` can start a match and is at most `candidateLength` characters long. Both get the
 * global flag, and their own flags are otherwise kept.
 */
export function steppedPattern(
  pattern: RegExp,
  candidates: RegExp,
  candidateLength: number,
): SteppedPattern {
  const flags = pattern.flags.replace(/[gy]/g, '');
  return {
    search: new RegExp(pattern.source, `${flags}g`),
    sticky: new RegExp(pattern.source, `${flags}y`),
    candidates: new RegExp(candidates.source, `${candidates.flags.replace(/[gy]/g, '')}g`),
    candidateLength,
  };
}

/**
 * Tells whether `pattern` may match in `text`: false only for a text of at most
 * `searchWindowChars` without a match. Most lines have none, and one test of a short line skips
 * the generators of the search in steps, which cost more than the search itself.
 */
export function mayMatch(text: string, pattern: SteppedPattern): boolean {
  if (text.length > searchWindowChars) {
    return true;
  }
  pattern.search.lastIndex = 0;
  return pattern.search.test(text);
}

/**
 * Finds the first match of `pattern.search` in `text` that starts at `from` or later, as
 * `exec` with `lastIndex = from` does, and yields after each window of `windowChars`. When at
 * most `windowChars` characters follow `from`, it runs that one `exec`.
 *
 * A longer text is read in windows that end at multiples of `windowChars`. In each, the
 * candidates pattern runs on the text cut `candidateLength - 1` characters after the window, so
 * it finds every candidate that starts in the window. The sticky pattern then tries each
 * candidate on the whole text in order. These are the start positions where `exec` would find
 * a match, tried with the same pattern, so the first match is the same. One try still runs in
 * one piece: a pattern with an unbounded part such as `\s*` reads that whole run in one step.
 */
export function* findSteps(
  text: string,
  pattern: SteppedPattern,
  from = 0,
  meter = new StepMeter(),
  windowChars = searchWindowChars,
): Steps<RegExpExecArray | null> {
  if (text.length - from <= windowChars) {
    pattern.search.lastIndex = from;
    const match = pattern.search.exec(text);
    if (meter.count(text.length - from)) {
      yield;
    }
    return match;
  }
  // The windows end at multiples of `windowChars`, wherever the search starts.
  for (let windowStart = from; windowStart < text.length; ) {
    const boundary = (Math.floor(windowStart / windowChars) + 1) * windowChars;
    const windowEnd = Math.min(text.length, boundary);
    const match = findInWindow(text, pattern, windowStart, windowEnd);
    // A search that stops at a match counts the text up to the match's end.
    const readEnd = match === null ? windowEnd : match.index + match[0].length;
    if (meter.count(readEnd - windowStart)) {
      yield;
    }
    if (match !== null) {
      return match;
    }
    windowStart = windowEnd;
  }
  return null;
}

function findInWindow(
  text: string,
  pattern: SteppedPattern,
  windowStart: number,
  windowEnd: number,
): RegExpExecArray | null {
  // A slice from 0 keeps what comes before each candidate, for a lookbehind.
  const head = text.slice(0, windowEnd + pattern.candidateLength - 1);
  const { candidates, sticky } = pattern;
  candidates.lastIndex = windowStart;
  for (;;) {
    const candidate = candidates.exec(head);
    if (candidate === null || candidate.index >= windowEnd) {
      return null;
    }
    sticky.lastIndex = candidate.index;
    const match = sticky.exec(text);
    if (match !== null) {
      return match;
    }
    // The next candidate may overlap this one, so the search goes on after its first character.
    candidates.lastIndex = candidate.index + 1;
  }
}

/** Finds every match of `pattern.search` in `text` as `matchAll` does, in steps. */
export function* matchAllSteps(
  text: string,
  pattern: SteppedPattern,
  meter = new StepMeter(),
  windowChars = searchWindowChars,
): Steps<RegExpExecArray[]> {
  const matches: RegExpExecArray[] = [];
  let from = 0;
  for (;;) {
    const match = yield* findSteps(text, pattern, from, meter, windowChars);
    if (match === null) {
      return matches;
    }
    matches.push(match);
    // The pattern never matches the empty string, so the search moves on.
    from = match.index + match[0].length;
    if (meter.count(0)) {
      yield;
    }
  }
}
