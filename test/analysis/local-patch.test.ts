import { describe, expect, it } from 'vitest';
import { additionsPatch } from '../../src/analysis/local-patch.ts';
import { addedLines, changedLineRanges } from '../../src/analysis/patch.ts';

const limits = { maxEditLength: 10_000, timeoutMs: 10_000 };

async function patchOf(oldText: string, newText: string) {
  const result = await additionsPatch(oldText, newText, limits);
  if (result === null) {
    throw new Error('the diff gave up');
  }
  return result;
}

describe('additionsPatch', () => {
  it('numbers inserted lines as in the new text', async () => {
    const result = await patchOf('a\nb\nc\n', 'a\nx\nb\nc\ny\n');

    expect(result.patch).toBe('@@ -1,0 +2,1 @@\n+x\n@@ -3,0 +5,1 @@\n+y');
    expect(result.additions).toBe(2);
    expect(addedLines(result.patch)).toEqual([
      { line: 2, text: 'x' },
      { line: 5, text: 'y' },
    ]);
  });

  it('leaves out removed lines', async () => {
    const result = await patchOf('a\nold1\nold2\nc\n', 'a\nnew\nc\n');

    expect(result.patch).toBe('@@ -3,0 +2,1 @@\n+new');
    expect(addedLines(result.patch)).toEqual([{ line: 2, text: 'new' }]);
  });

  it('adds every line to an empty text', async () => {
    const result = await patchOf('', 'one\ntwo\n');

    expect(result.patch).toBe('@@ -0,0 +1,2 @@\n+one\n+two');
    expect(changedLineRanges(result.patch)).toEqual([{ start: 1, end: 2 }]);
  });

  it('returns no hunks for equal texts', async () => {
    const result = await patchOf('a\nb\n', 'a\nb\n');

    expect(result.patch).toBe('');
    expect(result.additions).toBe(0);
  });

  it('counts a new final newline as a change', async () => {
    const result = await patchOf('a\nb', 'a\nb\n');

    expect(addedLines(result.patch)).toEqual([{ line: 2, text: 'b' }]);
  });

  it('keeps carriage returns for the parser', async () => {
    const result = await patchOf('a\r\nb\r\n', 'a\r\nsecret\r\nb\r\n');

    expect(result.patch).toBe('@@ -1,0 +2,1 @@\n+secret\r');
    expect(addedLines(result.patch)).toEqual([{ line: 2, text: 'secret' }]);
  });

  it('keeps repeated lines in place', async () => {
    // Each `}` occurs on both sides, so only the new `}` after `b` is added.
    const result = await patchOf('a\n}\nc\n}\n', 'a\n}\nb\n}\nc\n}\n');

    expect(addedLines(result.patch).map((line) => line.line)).toEqual([3, 4]);
    expect(result.additions).toBe(2);
  });

  it('adds lines that occur only in the new text', async () => {
    const oldLines = Array.from({ length: 3000 }, (_, index) => `row ${index}`);
    const newLines = oldLines.map((line, index) => (index % 3 === 0 ? `changed ${index}` : line));

    const result = await patchOf(`${oldLines.join('\n')}\n`, `${newLines.join('\n')}\n`);

    const added = addedLines(result.patch);
    expect(added).toHaveLength(1000);
    expect(added[0]).toEqual({ line: 1, text: 'changed 0' });
    expect(added.at(-1)).toEqual({ line: 2998, text: 'changed 2997' });
  });

  it('gives up past the edit length', async () => {
    // The shared lines `x` and `y` swap places, which takes two edits.
    const result = await additionsPatch('x\ny\n', 'y\nx\n', { maxEditLength: 1, timeoutMs: 10_000 });

    expect(result).toBeNull();
  });

  it('gives up past the timeout', async () => {
    // Five distinct lines in two orders, so every line is shared. The full diff of 4,000 of them
    // took 1.6 s on a 2 vCPU AMD EPYC, far longer than the millisecond it gets here.
    const repeated = ['}', '', '  return value;', '{', '  const value = 1;'];
    const linesInOrder = (step: number) =>
      Array.from({ length: 4000 }, (_, index) => repeated[(index * step) % 5]).join('\n');

    const result = await additionsPatch(linesInOrder(7), linesInOrder(11), {
      maxEditLength: 1_000_000,
      timeoutMs: 0,
    });

    expect(result).toBeNull();
  });


  it('finishes within the edit length', async () => {
    const result = await additionsPatch('x\ny\n', 'y\nx\n', { maxEditLength: 2, timeoutMs: 10_000 });

    expect(result?.additions).toBe(1);
  });
});
