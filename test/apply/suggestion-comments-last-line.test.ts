// Changes to the last line of a file without a final line break go to the review body, because
// accepting a suggestion there may add a line break that the preview does not have. The test
// helper models GitHub that way: it keeps the line break before the block's closing fence.
import { describe, expect, it } from 'vitest';
import { buildFileSuggestions } from '../../src/apply/suggestion-comments.ts';
import { acceptSuggestions } from '../helpers/accept-suggestions.ts';

const path = 'src/file.txt';

/** Returns a pull request patch that adds `text`, marking a missing final line break. */
function addedFilePatch(text: string): string {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const added = lines.map((line) => `+${line}`).join('\n');
  const marker = text.endsWith('\n') ? '' : '\n\\ No newline at end of file';
  return `@@ -0,0 +1,${lines.length} @@\n${added}${marker}`;
}

function build(originalText: string, proposedText: string) {
  return buildFileSuggestions({
    path,
    originalText,
    proposedText,
    pullRequestPatch: addedFilePatch(originalText),
  });
}

describe('buildFileSuggestions on a last line without a line break', () => {
  const noBreak = '\\ No newline at end of file\n';

  it.each([
    ['a last-line change', 'one\nTWO', `@@ -2,1 +2,1 @@\n-two\n${noBreak}+TWO\n${noBreak}`],
    ['a line added at the end', 'one\ntwo\nthree', `@@ -2,1 +2,2 @@\n-two\n${noBreak}+two\n+three\n${noBreak}`],
    ['the removal of every line', '', `@@ -1,2 +0,0 @@\n-one\n-two\n${noBreak}`],
  ])('moves %s to the body', async (_case, proposedText, hunk) => {
    const result = await build('one\ntwo', proposedText);
    expect(result.comments).toEqual([]);
    expect(result.outsideDiff).toBe(`--- a/${path}\n+++ b/${path}\n${hunk}`);
  });

  it('still suggests changes above the last line', async () => {
    const originalText = 'one\ntwo\nthree';
    const result = await build(originalText, 'ONE\ntwo\nTHREE');
    expect(result.comments).toEqual([
      { path, line: 1, side: 'RIGHT', body: '```suggestion\nONE\n```' },
    ]);
    expect(result.outsideDiff).toBe(
      `--- a/${path}\n+++ b/${path}\n@@ -3,1 +3,1 @@\n` +
        '-three\n\\ No newline at end of file\n+THREE\n\\ No newline at end of file\n',
    );
    const records = result.comments.map((comment) => ({
      line: comment.line,
      startLine: comment.start_line ?? null,
      body: comment.body,
    }));
    expect(acceptSuggestions(originalText, records)).toBe('ONE\ntwo\nthree');
  });

  it('suggests a last-line change when the line break is there', async () => {
    const result = await build('one\ntwo\n', 'one\nTWO\n');
    expect(result.outsideDiff).toBeNull();
    expect(result.comments).toEqual([
      { path, line: 2, side: 'RIGHT', body: '```suggestion\nTWO\n```' },
    ]);
  });
});
