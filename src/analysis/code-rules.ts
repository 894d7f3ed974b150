import { codePartSteps, isCommentLine, isJavaScriptLike, isPython } from './code-text.ts';
import { buildExcerptSteps } from './excerpt.ts';
import { findSteps, steppedPattern } from './line-search.ts';
import { lineRule } from './line-rule.ts';
import type { AddedLine } from './patch.ts';
import type { Rule, RuleFinding } from './rules.ts';
import { StepMeter, type Steps } from './steps.ts';

// Each pattern comes with the part of its match that every match starts with, as candidates
// for the search in steps of a long line.
export const CONSOLE_CALL = steppedPattern(
  /(?<![\w$])console\.(log|debug|trace)\s*\(/,
  /console\.(?:log|debug|trace)/,
  'console.debug'.length,
);
export const DEBUGGER_STATEMENT = steppedPattern(
  /(?<![\w$.])debugger\s*(?:;|\}|$)/,
  /debugger/,
  'debugger'.length,
);
// A print call that starts a statement: at the line start, after `;`, or after the `:` of a
// one-line block such as `if x: print(x)`.
export const PRINT_STATEMENT = steppedPattern(/(?:^|[;:])\s*print\s*\(/, /^|[;:]/, 1);

const consoleLogRule = lineRule({
  id: 'debug/console-log',
  severity: 'warning',
  appliesTo: isJavaScriptLike,
  *match(text) {
    if (isCommentLine(text, 'c-like')) {
      return undefined;
    }
    const call = yield* findSteps(yield* codePartSteps(text, 'c-like'), CONSOLE_CALL);
    if (!call) {
      return undefined;
    }
    const method = call[1] ?? 'log';
    return {
      index: call.index,
      message: `A console.${method} call was added, so remove this debug output or use the logger.`,
    };
  },
});

const debuggerRule = lineRule({
  id: 'debug/debugger',
  severity: 'warning',
  appliesTo: isJavaScriptLike,
  *match(text) {
    if (isCommentLine(text, 'c-like')) {
      return undefined;
    }
    const code = yield* codePartSteps(text, 'c-like');
    const statement = yield* findSteps(code.trimEnd(), DEBUGGER_STATEMENT);
    if (!statement) {
      return undefined;
    }
    return {
      index: statement.index,
      message:
        'A debugger statement was added, so remove it because it pauses execution whenever ' +
        'developer tools are open.',
    };
  },
});

const pythonPrintRule = lineRule({
  id: 'debug/python-print',
  severity: 'warning',
  appliesTo: isPython,
  *match(text) {
    if (isCommentLine(text, 'hash')) {
      return undefined;
    }
    const statement = yield* findSteps(yield* codePartSteps(text, 'hash'), PRINT_STATEMENT);
    if (!statement) {
      return undefined;
    }
    return {
      index: statement.index + statement[0].indexOf('print'),
      message: 'A print() call was added, so remove this debug output or use the logging module.',
    };
  },
});

const CONFLICT_MESSAGE =
  'Merge conflict markers were committed, so resolve the conflict and delete the marker lines.';

function isConflictStart(text: string): boolean {
  return text.startsWith('<<<<<<< ');
}

function isConflictEnd(text: string): boolean {
  return text.startsWith('>>>>>>> ');
}

// A line of exactly seven `=` also underlines a heading in Markdown, reStructuredText and
// AsciiDoc, so in those files it counts only inside a conflict.
function isConflictSeparator(text: string, path: string): boolean {
  return text === '=======' && !/\.(?:md|markdown|mdx|rst|adoc|asciidoc|txt)$/i.test(path);
}

/**
 * Returns the index of the `>>>>>>>` line that closes the conflict opened at `startIndex`, or
 * undefined when the consecutive added lines after it end or open another conflict first.
 */
function* conflictEndSteps(
  lines: readonly AddedLine[],
  startIndex: number,
  meter: StepMeter,
): Steps<number | undefined> {
  for (let index = startIndex + 1; index < lines.length; index += 1) {
    const line = lines[index]!;
    if (meter.count(line.text.length)) {
      yield;
    }
    if (line.line !== lines[index - 1]!.line + 1 || isConflictStart(line.text)) {
      return undefined;
    }
    if (isConflictEnd(line.text)) {
      return index;
    }
  }
  return undefined;
}

/**
 * Reports one finding per conflict, from its `<<<<<<<` line to its `>>>>>>>` line, when the whole
 * conflict is added. A marker outside such a conflict is reported on its own.
 */
const mergeConflictMarkerRule: Rule = {
  id: 'merge-conflict-marker',
  severity: 'error',
  *check(path, lines) {
    const findings: RuleFinding[] = [];
    function* report(startIndex: number, endIndex: number): Steps<void> {
      const start = lines[startIndex]!;
      findings.push({
        ruleId: 'merge-conflict-marker',
        severity: 'error',
        message: CONFLICT_MESSAGE,
        startLine: start.line,
        endLine: lines[endIndex]!.line,
        excerpt: yield* buildExcerptSteps(start.text, path),
      });
    }

    const meter = new StepMeter();
    for (let index = 0; index < lines.length; index += 1) {
      const text = lines[index]!.text;
      if (meter.count(text.length)) {
        yield;
      }
      if (isConflictStart(text)) {
        const endIndex = (yield* conflictEndSteps(lines, index, meter)) ?? index;
        yield* report(index, endIndex);
        index = endIndex;
      } else if (isConflictEnd(text) || isConflictSeparator(text, path)) {
        yield* report(index, index);
      }
    }
    return findings;
  },
};

export const TODO_MARKER = steppedPattern(
  /\b(TODO|FIXME)(?=[:( ]|$)/,
  /TODO|FIXME/,
  'FIXME'.length,
);
// The marker counts only after something that starts a comment in a common language.
export const COMMENT_BEFORE_MARKER = steppedPattern(
  /\/\/|\/\*|#|<!--|--|\{#|^\s*[*;%]/,
  /\/\/|\/\*|#|<!--|--|\{#|^/,
  '<!--'.length,
);

const todoCommentRule = lineRule({
  id: 'todo-comment',
  severity: 'notice',
  *match(text) {
    // The leftmost comment start also ends first, so a marker counts when it follows that end.
    // Searching once keeps a long line with many markers linear instead of quadratic.
    const comment = yield* findSteps(text, COMMENT_BEFORE_MARKER);
    if (!comment) {
      return undefined;
    }
    const commentEnd = comment.index + comment[0].length;
    const meter = new StepMeter();
    // Reads the markers in the order that `matchAll` returns them, up to the first one after
    // the comment start.
    for (let from = 0; ; ) {
      const marker = yield* findSteps(text, TODO_MARKER, from, meter);
      if (!marker) {
        return undefined;
      }
      if (marker.index >= commentEnd) {
        return {
          index: marker.index,
          message:
            `A new ${marker[1] ?? 'TODO'} comment marks unfinished work, ` +
            'so finish the work or track it in an issue.',
        };
      }
      from = marker.index + marker[0].length;
    }
  },
});

export const codeRules: readonly Rule[] = [
  consoleLogRule,
  debuggerRule,
  pythonPrintRule,
  mergeConflictMarkerRule,
  todoCommentRule,
];
