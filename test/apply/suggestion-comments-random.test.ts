// Random edits of small files, turned into suggestions and accepted the way GitHub accepts them.
// Together with the changes left for the review body, they must give the previewed text, and
// no two of them may touch the same line. Some files lack a final line break, and then no
// suggestion may select their last line. The seed is fixed, so a failure reproduces.
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

const noNewlineMarker = '\\ No newline at end of file';

/**
 * Returns a pull request patch that adds `lines`, all of them when `wholeFile` is set, else each
 * with a chance of 3 in 4, so that some changes of the fix fall outside the diff. With
 * `finalLineBreak` false the patch marks the last line as lacking its line break.
 */
function randomPullRequestPatch(
  random: () => number,
  lines: readonly string[],
  wholeFile: boolean,
  finalLineBreak: boolean,
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
    if (!finalLineBreak && end === lines.length - 1) added.push(noNewlineMarker);
    hunks.push(`@@ -${start - addedBefore},0 +${start + 1},${count} @@\n${added.join('\n')}`);
    addedBefore += count;
    start = end;
  }
  return hunks.length > 0 ? hunks.join('\n') : null;
}

/**
 * Joins `lines`, each ending with `lineBreak` except the last one when `finalLineBreak` is false.
 * A last line that is empty keeps its line break, because without it the line would vanish.
 */
function joinLines(lines: readonly string[], lineBreak: string, finalLineBreak = true): string {
  const text = lines.map((line) => line + lineBreak).join('');
  if (finalLineBreak || lines.length === 0 || lines.at(-1) === '') return text;
  return text.slice(0, -lineBreak.length);
}

/**
 * Returns the edits that the hunks of the review body's unified diff make to the head file. An
 * added line keeps its line break unless the next line of the hunk marks it as missing.
 */
function outsideDiffEdits(outsideDiff: string | null): LineEdit[] {
  if (outsideDiff === null) return [];
  return parsePatch(outsideDiff)[0]!.hunks.map((hunk) => {
    let content = '';
    hunk.lines.forEach((line, index) => {
      if (!line.startsWith('+')) return;
      const lineBreak = hunk.lines[index + 1] === noNewlineMarker ? '' : '\n';
      content += line.slice(1) + lineBreak;
    });
    return { first: hunk.oldStart, count: hunk.oldLines, content };
  });
}

describe('buildFileSuggestions on random edits', () => {
  it('gives the preview without overlaps', { timeout: 60_000 }, async () => {
    const random = seededRandom(seed);
    let fullySuggested = 0;
    let filesWithoutBreak = 0;
    for (let index = 0; index < caseCount; index++) {
      const lineBreak = random() < 0.5 ? '\r\n' : '\n';
      const lineCount = randomInteger(random, 0, 6);
      const lines = Array.from({ length: lineCount }, () => pick(random, linePieces));
      // About one file in four lacks a final line break, and so does one fix in four.
      const originalBreak = random() < 0.75 || lines.length === 0 || lines.at(-1) === '';
      const originalText = joinLines(lines, lineBreak, originalBreak);
      const proposedText = joinLines(randomlyEdited(random, lines), lineBreak, random() < 0.75);
      if (proposedText === originalText) continue;
      const wholeFile = random() < 0.5;
      const pullRequestPatch = randomPullRequestPatch(random, lines, wholeFile, originalBreak);
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
      // Accepting a suggestion on a last line without a line break may add one.
      if (!originalBreak) {
        const lastLines = result.comments.filter((comment) => comment.line === lines.length);
        expect(lastLines, label).toEqual([]);
        filesWithoutBreak++;
      }
      // A pull request that adds the whole file puts every line in its diff, so when both texts
      // end with a line break, or the fix empties the file, every change is a suggestion.
      const breaksKept = originalBreak && (proposedText === '' || proposedText.endsWith('\n'));
      if (wholeFile && lines.length > 0 && breaksKept) {
        expect(result.outsideDiff, label).toBeNull();
        fullySuggested++;
      }
    }
    // Guards against a generator that stops producing files whose changes are all suggestions.
    expect(fullySuggested).toBeGreaterThan(caseCount / 5);
    expect(filesWithoutBreak).toBeGreaterThan(caseCount / 8);
  });
});
