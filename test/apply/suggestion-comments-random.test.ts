// Random edits of small files, turned into suggestions and accepted the way GitHub accepts them.
// Together with the changes left for the review body, they must give the previewed text, and
// no two of them may touch the same line. The seed is fixed, so a failure reproduces.
import { parsePatch } from 'diff';
import { describe, expect, it } from 'vitest';
import { buildFileSuggestions } from '../../src/apply/suggestion-comments.ts';
import {
  applyLineEdits,
  firstOverlap,
  suggestionEdit,
  type LineEdit,
} from '../helpers/accept-suggestions.ts';
import { seededRandom } from '../helpers/seeded-random.ts';

const seed = 20_261_206;
const caseCount = 2_000;
// Few distinct lines, so that the diff has equal lines to choose between, and backtick runs
// that the suggestion fences must outgrow.
const linePieces = ['a', 'b', 'const x = 1;', '', '```', '`x`', '````js', '  }'];

function pick<T>(random: () => number, values: readonly T[]): T {
  return values[Math.floor(random() * values.length)]!;
}

function randomInteger(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** Applies one to three random insertions (top, between lines, end), deletions or replacements. */
function randomlyEdited(random: () => number, lines: readonly string[]): string[] {
  const edited = [...lines];
  const editCount = randomInteger(random, 1, 3);
  for (let index = 0; index < editCount; index++) {
    const kinds = ['insert', 'top', 'end', 'delete', 'replace'] as const;
    const kind = edited.length === 0 ? 'insert' : pick(random, kinds);
    const addedCount = randomInteger(random, 1, 2);
    const added = Array.from({ length: addedCount }, () => pick(random, linePieces));
    if (kind === 'top') {
      edited.unshift(...added);
    } else if (kind === 'end') {
      edited.push(...added);
    } else if (kind === 'insert') {
      edited.splice(randomInteger(random, 0, edited.length), 0, ...added);
    } else {
      const at = randomInteger(random, 0, edited.length - 1);
      const count = randomInteger(random, 1, Math.min(2, edited.length - at));
      edited.splice(at, count, ...(kind === 'replace' ? added : []));
    }
  }
  return edited;
}

/**
 * Returns a pull request patch that adds `lines`, all of them when `wholeFile` is set, else each
 * with a chance of 3 in 4, so that some changes of the fix fall outside the diff.
 */
function randomPullRequestPatch(
  random: () => number,
  lines: readonly string[],
  wholeFile: boolean,
): string | null {
  const inDiff = lines.map(() => wholeFile || random() < 0.75);
  const hunks: string[] = [];
  let addedBefore = 0;
  for (let start = 0; start < lines.length; start++) {
    if (!inDiff[start]) continue;
    let end = start;
    while (end + 1 < lines.length && inDiff[end + 1]) end++;
    const count = end - start + 1;
    const added = lines.slice(start, end + 1).map((line) => `+${line}`);
    hunks.push(`@@ -${start - addedBefore},0 +${start + 1},${count} @@\n${added.join('\n')}`);
    addedBefore += count;
    start = end;
  }
  return hunks.length > 0 ? hunks.join('\n') : null;
}

function joinLines(lines: readonly string[], lineBreak: string): string {
  return lines.map((line) => line + lineBreak).join('');
}

/** Returns the edits that the hunks of the review body's unified diff make to the head file. */
function outsideDiffEdits(outsideDiff: string | null): LineEdit[] {
  if (outsideDiff === null) return [];
  return parsePatch(outsideDiff)[0]!.hunks.map((hunk) => ({
    first: hunk.oldStart,
    count: hunk.oldLines,
    content: hunk.lines
      .filter((line) => line.startsWith('+'))
      .map((line) => `${line.slice(1)}\n`)
      .join(''),
  }));
}

describe('buildFileSuggestions on random edits', () => {
  it('gives the preview without overlaps', { timeout: 60_000 }, async () => {
    const random = seededRandom(seed);
    let fullySuggested = 0;
    for (let index = 0; index < caseCount; index++) {
      const lineBreak = random() < 0.5 ? '\r\n' : '\n';
      const lineCount = randomInteger(random, 0, 6);
      const lines = Array.from({ length: lineCount }, () => pick(random, linePieces));
      const originalText = joinLines(lines, lineBreak);
      const proposedText = joinLines(randomlyEdited(random, lines), lineBreak);
      if (proposedText === originalText) continue;
      const wholeFile = random() < 0.5;
      const pullRequestPatch = randomPullRequestPatch(random, lines, wholeFile);
      const label = JSON.stringify({ index, originalText, proposedText, pullRequestPatch });

      const result = await buildFileSuggestions({
        path: 'src/file.txt',
        originalText,
        proposedText,
        pullRequestPatch,
      });

      const suggestions = result.comments.map((comment) =>
        suggestionEdit({
          line: comment.line,
          startLine: comment.start_line ?? null,
          body: comment.body,
        }),
      );
      const edits = [...suggestions, ...outsideDiffEdits(result.outsideDiff)];
      expect(firstOverlap(suggestions), label).toBeNull();
      expect(firstOverlap(edits), label).toBeNull();
      expect(applyLineEdits(originalText, edits), label).toBe(proposedText);
      // A pull request that adds the whole file puts every line in its diff.
      if (wholeFile && lines.length > 0) {
        expect(result.outsideDiff, label).toBeNull();
        fullySuggested++;
      }
    }
    // Guards against a generator that stops producing files whose changes are all suggestions.
    expect(fullySuggested).toBeGreaterThan(caseCount / 4);
  });
});
