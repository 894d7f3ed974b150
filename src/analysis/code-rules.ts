import { codePart, isCommentLine, isJavaScriptLike, isPython } from './code-text.ts';
import { buildExcerpt } from './excerpt.ts';
import { lineRule } from './line-rule.ts';
import type { AddedLine } from './patch.ts';
import type { Rule, RuleFinding } from './rules.ts';
import { StepMeter, type Steps } from './steps.ts';

const CONSOLE_CALL = /(?<![\w$])console\.(log|debug|trace)\s*\(/;
const DEBUGGER_STATEMENT = /(?<![\w$.])debugger\s*(?:;|\}|$)/;
// A print call that starts a statement: at the line start, after `;`, or after the `:` of a
// one-line block such as `if x: print(x)`.
const PRINT_STATEMENT = /(?:^|[;:])\s*print\s*\(/;

const consoleLogRule = lineRule({
  id: 'debug/console-log',
  severity: 'warning',
  appliesTo: isJavaScriptLike,
  match(text) {
    if (isCommentLine(text, 'c-like')) {
      return undefined;
    }
    const call = CONSOLE_CALL.exec(codePart(text, 'c-like'));
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
  match(text) {
    if (isCommentLine(text, 'c-like')) {
      return undefined;
    }
    const statement = DEBUGGER_STATEMENT.exec(codePart(text, 'c-like').trimEnd());
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
  match(text) {
    if (isCommentLine(text, 'hash')) {
      return undefined;
    }
    const statement = PRINT_STATEMENT.exec(codePart(text, 'hash'));
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
    const report = (startIndex: number, endIndex: number): void => {
      const start = lines[startIndex]!;
      findings.push({
        ruleId: 'merge-conflict-marker',
        severity: 'error',
        message: CONFLICT_MESSAGE,
        startLine: start.line,
        endLine: lines[endIndex]!.line,
        excerpt: buildExcerpt(start.text, path),
      });
    };

    const meter = new StepMeter();
    for (let index = 0; index < lines.length; index += 1) {
      const text = lines[index]!.text;
      if (meter.count(text.length)) {
        yield;
      }
      if (isConflictStart(text)) {
        const endIndex = (yield* conflictEndSteps(lines, index, meter)) ?? index;
        report(index, endIndex);
        index = endIndex;
      } else if (isConflictEnd(text) || isConflictSeparator(text, path)) {
        report(index, index);
      }
    }
    return findings;
  },
};

const TODO_MARKER = /\b(TODO|FIXME)(?=[:( ]|$)/g;
// The marker counts only after something that starts a comment in a common language.
const COMMENT_BEFORE_MARKER = /\/\/|\/\*|#|<!--|--|\{#|^\s*[*;%]/;

const todoCommentRule = lineRule({
  id: 'todo-comment',
  severity: 'notice',
  match(text) {
    // The leftmost comment start also ends first, so a marker counts when it follows that end.
    // Searching once keeps a long line with many markers linear instead of quadratic.
    const comment = COMMENT_BEFORE_MARKER.exec(text);
    if (!comment) {
      return undefined;
    }
    const commentEnd = comment.index + comment[0].length;
    for (const marker of text.matchAll(TODO_MARKER)) {
      if (marker.index >= commentEnd) {
        return {
          index: marker.index,
          message:
            `A new ${marker[1] ?? 'TODO'} comment marks unfinished work, ` +
            'so finish the work or track it in an issue.',
        };
      }
    }
    return undefined;
  },
});

export const codeRules: readonly Rule[] = [
  consoleLogRule,
  debuggerRule,
  pythonPrintRule,
  mergeConflictMarkerRule,
  todoCommentRule,
];
