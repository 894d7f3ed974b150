import { describe, expect, it } from 'vitest';
import {
  buildFileSuggestions,
  dominantLineBreak,
  SuggestionDiffError,
  suggestionBlock,
} from '../../src/apply/suggestion-comments.ts';
import { failingDiffWorker } from '../helpers/failing-diff-worker.ts';

const original = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight'].join('\n') + '\n';

/** Pull request patch whose one hunk covers new lines 2 to 6. */
const patchLines2To6 = '@@ -2,3 +2,5 @@\n two\n+three\n+four\n five\n six';

function build(proposed: string, patch: string | null = patchLines2To6, text = original) {
  return buildFileSuggestions({
    path: 'src/list.txt',
    originalText: text,
    proposedText: proposed,
    pullRequestPatch: patch,
  });
}

describe('buildFileSuggestions', async () => {
  it('suggests a multi-line replacement', async () => {
    const result = await build(original.replace('three\nfour\n', 'THREE\nFOUR\nFOUR-B\n'));
    expect(result.outsideDiff).toBeNull();
    expect(result.comments).toEqual([
      {
        path: 'src/list.txt',
        start_line: 3,
        start_side: 'RIGHT',
        line: 4,
        side: 'RIGHT',
        body: '```suggestion\nTHREE\nFOUR\nFOUR-B\n```',
      },
    ]);
  });

  it('suggests a single-line change', async () => {
    const result = await build(original.replace('five', 'FIVE'));
    expect(result.comments).toEqual([
      { path: 'src/list.txt', line: 5, side: 'RIGHT', body: '```suggestion\nFIVE\n```' },
    ]);
  });

  it('suggests a deletion with an empty block', async () => {
    const result = await build(original.replace('four\n', ''));
    expect(result.comments).toEqual([
      { path: 'src/list.txt', line: 4, side: 'RIGHT', body: '```suggestion\n```' },
    ]);
  });

  it('anchors an insertion on the line above', async () => {
    const result = await build(original.replace('four\n', 'four\ninserted\n'));
    expect(result.comments).toEqual([
      { path: 'src/list.txt', line: 4, side: 'RIGHT', body: '```suggestion\nfour\ninserted\n```' },
    ]);
  });

  it('merges insertions that select one line', async () => {
    // 'one' goes above line 1 and 'two-b' below it, so each alone would select line 1.
    const text = 'two\nthree\n';
    const result = await build('one\ntwo\ntwo-b\nthree\n', '@@ -0,0 +1,2 @@\n+two\n+three', text);
    expect(result.outsideDiff).toBeNull();
    expect(result.comments).toEqual([
      { path: 'src/list.txt', line: 1, side: 'RIGHT', body: '```suggestion\none\ntwo\ntwo-b\n```' },
    ]);
  });

  it('moves merged insertions outside the diff to the body', async () => {
    const result = await build(original.replace('one\n', 'zero\none\none-b\n'));
    expect(result.comments).toEqual([]);
    expect(result.outsideDiff).toBe(
      '--- a/src/list.txt\n+++ b/src/list.txt\n@@ -0,0 +1,1 @@\n+zero\n@@ -1,0 +3,1 @@\n+one-b\n',
    );
  });

  it('moves a change outside the diff to the body', async () => {
    const result = await build(original.replace('eight', 'EIGHT').replace('five', 'FIVE'));
    expect(result.comments.map((comment) => comment.line)).toEqual([5]);
    expect(result.outsideDiff).toBe(
      '--- a/src/list.txt\n+++ b/src/list.txt\n@@ -8,1 +8,1 @@\n-eight\n+EIGHT\n',
    );
  });

  it('keeps a range across hunks out', async () => {
    const twoHunks = '@@ -1,1 +1,2 @@\n one\n+two\n@@ -3,1 +4,2 @@\n four\n+five';
    const result = await build(original.replace('two\nthree\nfour\n', 'TWO\nTHREE\nFOUR\n'), twoHunks);
    expect(result.comments).toEqual([]);
    expect(result.outsideDiff).toContain('-two\n-three\n-four\n+TWO\n+THREE\n+FOUR\n');
  });

  it('moves a final newline change to the body', async () => {
    const result = await build('one\ntwo', '@@ -1 +1,2 @@\n one\n+two', 'one\ntwo\n');
    expect(result.comments).toEqual([]);
    expect(result.outsideDiff).toContain('\\ No newline at end of file');
  });

  it.each([
    ['with a final newline', 'console.log(1);\ndebugger;\n', '@@ -0,0 +1,2 @@\n+console.log(1);\n+debugger;'],
    ['with CRLF line endings', 'console.log(1);\r\ndebugger;\r\n', '@@ -0,0 +1,2 @@\n+console.log(1);\r\n+debugger;\r'],
  ])('removes every line of a file emptied %s', async (_case, text, patch) => {
    const result = await build('', patch, text);
    expect(result.outsideDiff).toBeNull();
    expect(result.comments).toHaveLength(1);
    expect(result.comments[0]).toMatchObject({ path: 'src/list.txt', start_line: 1, line: 2, side: 'RIGHT' });
    expect(result.comments[0]!.body).toMatch(/^```suggestion\r?\n```$/);
  });

  it('moves an emptied file outside the diff to the body', async () => {
    const result = await build('', patchLines2To6);
    expect(result.comments).toEqual([]);
    expect(result.outsideDiff).toContain('@@ -1,8 +0,0 @@\n-one\n');
  });

  it('writes CRLF blocks for a CRLF file', async () => {
    const crlf = original.replaceAll('\n', '\r\n');
    const result = await build(crlf.replace('four\r\n', 'four\r\ninserted\r\n'), patchLines2To6, crlf);
    expect(result.comments[0]?.body).toBe('```suggestion\r\nfour\r\ninserted\r\n```');
  });

  it('writes LF blocks for a mostly LF file', async () => {
    const mixed = original.replace('one\n', 'one\r\n');
    const result = await build(mixed.replace('five', 'FIVE'), patchLines2To6, mixed);
    expect(result.comments[0]?.body).toBe('```suggestion\nFIVE\n```');
  });

  it('moves a suggestion over the comment limit to the body', async () => {
    // 700 replaced lines of 100 characters make a block over GitHub's 65,536 characters.
    const lines = Array.from({ length: 700 }, (_, index) => `${index}`.padEnd(100, 'x'));
    const text = lines.join('\n') + '\n';
    const addedPatch = `@@ -0,0 +1,700 @@\n${lines.map((line) => `+${line}`).join('\n')}`;
    const proposed = lines.map((line) => line.replace('x', 'y')).join('\n') + '\n';

    const result = await build(proposed, addedPatch, text);

    expect(result.comments).toEqual([]);
    expect(result.outsideDiff).toContain(`@@ -1,700 +1,700 @@\n-${lines[0]}\n`);
    expect(result.outsideDiff).toContain(`\n+${lines[699]!.replace('x', 'y')}\n`);
  });

  it('sends everything to the body without a patch', async () => {
    const result = await build(original.replace('five', 'FIVE'), null);
    expect(result.comments).toEqual([]);
    expect(result.outsideDiff).toContain('+FIVE');
  });

  it('raises when the diff thread crashes', async () => {
    const worker = failingDiffWorker('crash');
    const file = {
      path: 'src/list.txt',
      originalText: original,
      proposedText: original.replace('five', 'FIVE'),
      pullRequestPatch: patchLines2To6,
    };

    try {
      const crashed = buildFileSuggestions(file, worker);
      await expect(crashed).rejects.toThrow(SuggestionDiffError);
      await expect(crashed).rejects.toThrow(
        'The diff for the suggestions on src/list.txt failed because the diff thread stopped ' +
          '(the diff thread failed: the test thread crashed on purpose), so nothing was posted. ' +
          'Apply the patch request again.',
      );
      const next = await buildFileSuggestions(file, worker);
      expect(next.comments.map((comment) => comment.line)).toEqual([5]);
    } finally {
      await worker.close();
    }
  });
});

describe('suggestionBlock', () => {
  it('lengthens the fence around backticks', () => {
    expect(suggestionBlock(['```js', 'x', '```'])).toBe('````suggestion\n```js\nx\n```\n````');
  });

  it('ends every line with the given break', () => {
    expect(suggestionBlock(['a', 'b'], '\r\n')).toBe('```suggestion\r\na\r\nb\r\n```');
  });
});

describe('dominantLineBreak', () => {
  it.each([
    ['a\r\nb\r\n', '\r\n'],
    ['a\nb\n', '\n'],
    ['a\r\nb\r\nc\n', '\r\n'],
    ['a\r\nb\nc\n', '\n'],
    ['a\r\nb\n', '\n'],
    ['no break', '\n'],
  ])('returns the break of most lines of %j', (text, expected) => {
    expect(dominantLineBreak(text)).toBe(expected);
  });
});
