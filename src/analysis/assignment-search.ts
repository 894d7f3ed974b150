/**
 * Finds the assignments of a quoted value, and the dotenv assignment of an unquoted one, that
 * the hard-coded credential check reads, with a long line searched in steps.
 */
import { findSteps, searchWindowChars, steppedPattern } from './line-search.ts';
import type { StepMeter, Steps } from './steps.ts';

const TYPE_NAME = String.raw`[A-Za-z_][\w.<>[\]]*`;

/**
 * A name, an assignment or key/value operator, and a quoted value. The name may be quoted
 * (`"password": "..."`) or indexed (`config['token'] = "..."`), may carry a type annotation
 * (`apiKey: string = "..."`), and the value may have a Python r/b/u prefix. An `f` prefix is left
 * out because an f-string builds its value from other variables.
 */
const QUOTED_ASSIGNMENT_HEAD_PARTS = [
  String.raw`(?<![\w$@.-])(["'\x60]?)([\w$@.-]+)\1\]?`,
  String.raw`(?:\s*:\s*${TYPE_NAME}(?:\s*\|\s*${TYPE_NAME})*)?`,
  String.raw`\s*(?::=|=>|=(?!=)|:(?!:))\s*`,
  String.raw`[rRbBuU]?(["'\x60])`,
];
const QUOTED_ASSIGNMENT = new RegExp(
  [...QUOTED_ASSIGNMENT_HEAD_PARTS, String.raw`((?:\\.|(?!\3)[^\\])*)\3`].join(''),
  'g',
);

/**
 * `QUOTED_ASSIGNMENT` up to the quote that opens the value, for long lines. The head matches in
 * at most one way at a position: a shorter name, type or run of spaces leaves a character that
 * the next part cannot match. So `QUOTED_ASSIGNMENT` matches where the head matches and its
 * value is closed, and the value can be read in parts.
 */
export const QUOTED_ASSIGNMENT_HEAD = steppedPattern(
  new RegExp(QUOTED_ASSIGNMENT_HEAD_PARTS.join('')),
  // Each match starts with a quote or a name character that the lookbehind allows.
  /(?<![\w$@.-])["'\x60]?[\w$@.-]/,
  2,
);

/**
 * Up to 8,192 items of a quoted value, for each quote: an escape, or a character other than the
 * quote and `\`. The items of a value can be read in only one way, so reading it in parts
 * stops where `QUOTED_ASSIGNMENT` reads it to.
 */
const QUOTED_VALUE_PART: Record<string, RegExp> = {
  '"': /(?:\\.|(?!")[^\\]){0,8192}/y,
  "'": /(?:\\.|(?!')[^\\]){0,8192}/y,
  '`': /(?:\\.|(?!`)[^\\]){0,8192}/y,
};

/** A match of `QUOTED_ASSIGNMENT`: where it starts and ends, the name and the value. */
export interface QuotedAssignment {
  index: number;
  end: number;
  name: string;
  value: string;
}

/**
 * Finds the matches of `QUOTED_ASSIGNMENT` as `matchAll` does. A text longer than `windowChars`
 * is searched in steps: the head with `findSteps`, then the value in parts up to its closing
 * quote. Without one there is no match at that position, and the search goes on after it.
 */
export function* findQuotedAssignmentSteps(
  text: string,
  meter: StepMeter,
  windowChars = searchWindowChars,
): Steps<QuotedAssignment[]> {
  const found: QuotedAssignment[] = [];
  if (text.length <= windowChars) {
    for (const match of text.matchAll(QUOTED_ASSIGNMENT)) {
      const end = match.index + match[0].length;
      found.push({ index: match.index, end, name: match[2] ?? '', value: match[4] ?? '' });
    }
    return found;
  }
  for (let from = 0; ; ) {
    const head = yield* findSteps(text, QUOTED_ASSIGNMENT_HEAD, from, meter, windowChars);
    if (head === null) {
      return found;
    }
    const valueStart = head.index + head[0].length;
    const quote = head[3]!;
    const valueEnd = yield* readSteps(text, valueStart, QUOTED_VALUE_PART[quote]!, meter);
    if (text.charAt(valueEnd) !== quote) {
      from = head.index + 1;
      continue;
    }
    const value = text.slice(valueStart, valueEnd);
    found.push({ index: head.index, end: valueEnd + 1, name: head[2] ?? '', value });
    from = valueEnd + 1;
  }
}

/**
 * Matches the sticky `part` at `start`, and again where it ended until it matches nothing, and
 * returns where the last match ended. Each match is bounded by the part's own quantifier.
 */
function* readSteps(text: string, start: number, part: RegExp, meter: StepMeter): Steps<number> {
  for (let position = start; ; ) {
    part.lastIndex = position;
    part.exec(text);
    const end = part.lastIndex;
    if (end === position) {
      return position;
    }
    if (meter.count(end - position)) {
      yield;
    }
    position = end;
  }
}

/** `NAME=value` without quotes, as `.env` files and direnv's `.envrc` write it. */
const UNQUOTED_ENV_ASSIGNMENT = /^(\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*=\s*)([^\s"'`#$]\S*)/;
// `UNQUOTED_ENV_ASSIGNMENT` up to the first character of the value, which matches in at most
// one way, and the rest of the value in parts, for long lines.
const UNQUOTED_ENV_HEAD = /^(\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*=\s*)[^\s"'`#$]/;
const UNQUOTED_VALUE_PART = /\S{0,16384}/y;


/** Matches `UNQUOTED_ENV_ASSIGNMENT` at the start of `text`, reading a long value in steps. */
export function* unquotedEnvAssignmentSteps(
  text: string,
  meter: StepMeter,
): Steps<{ name: string; value: string; start: number } | undefined> {
  if (text.length <= searchWindowChars) {
    const match = UNQUOTED_ENV_ASSIGNMENT.exec(text);
    if (!match) {
      return undefined;
    }
    return { name: match[2] ?? '', value: match[3] ?? '', start: (match[1] ?? '').length };
  }
  const head = UNQUOTED_ENV_HEAD.exec(text);
  if (!head) {
    return undefined;
  }
  const start = (head[1] ?? '').length;
  const end = yield* readSteps(text, start + 1, UNQUOTED_VALUE_PART, meter);
  return { name: head[2] ?? '', value: text.slice(start, end), start };
}
