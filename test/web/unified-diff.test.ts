import { createTwoFilesPatch } from 'diff';
import { describe, expect, it } from 'vitest';
import { countLines, diffStats } from '../../src/web/diff/diff-stats.ts';
import { parseUnifiedDiff } from '../../src/web/diff/parse-unified-diff.ts';

describe('parseUnifiedDiff', () => {
  it('numbers old and new lines', () => {
    const before = 'one\ntwo\nthree\nfour\n';
    const after = 'one\nTWO\nthree\nfour\nfive\n';
    const rows = parseUnifiedDiff(createTwoFilesPatch('a/x', 'b/x', before, after, '', '', { context: 3 }));
    expect(rows.map((row) => [row.kind, row.oldLine, row.newLine, row.text])).toEqual([
      ['header', null, null, '--- a/x'],
      ['header', null, null, '+++ b/x'],
      ['hunk', null, null, '@@ -1,4 +1,5 @@'],
      ['context', 1, 1, 'one'],
      ['delete', 2, null, 'two'],
      ['add', null, 2, 'TWO'],
      ['context', 3, 3, 'three'],
      ['context', 4, 4, 'four'],
      ['add', null, 5, 'five'],
    ]);
  });

  it('keeps a removed line that starts with two dashes', () => {
    const diff = '--- a/x\n+++ b/x\n@@ -1,2 +1,1 @@\n--- a comment\n keep\n';
    const rows = parseUnifiedDiff(diff);
    expect(rows.slice(2).map((row) => [row.kind, row.text])).toEqual([
      ['hunk', '@@ -1,2 +1,1 @@'],
      ['delete', '-- a comment'],
      ['context', 'keep'],
    ]);
  });

  it('numbers a second hunk from its header', () => {
    const diff = '@@ -1 +1 @@\n-a\n+b\n@@ -10,2 +10,2 @@\n x\n-y\n+z\n';
    const rows = parseUnifiedDiff(diff);
    expect(rows.filter((row) => row.kind !== 'hunk').map((row) => [row.oldLine, row.newLine])).toEqual([
      [1, null],
      [null, 1],
      [10, 10],
      [11, null],
      [null, 11],
    ]);
  });

  it('reports a missing final newline as a note', () => {
    const rows = parseUnifiedDiff(createTwoFilesPatch('a/x', 'b/x', 'a\n', 'a', '', ''));
    expect(rows.at(-1)).toEqual({ kind: 'note', oldLine: null, newLine: null, text: 'No newline at end of file' });
  });

  it('returns nothing for an empty diff', () => {
    expect(parseUnifiedDiff('')).toEqual([]);
  });
});

describe('diffStats', () => {
  const original = Array.from({ length: 12 }, (_, index) => `line ${index + 1}`).join('\n') + '\n';
  const patch = (after: string) => createTwoFilesPatch('a/x', 'b/x', original, after, '', '', { context: 3 });

  it('counts added and removed lines', () => {
    const stats = diffStats(patch(original.replace('line 3\n', 'LINE 3\nline 3b\n')), original);
    expect(stats.added).toBe(2);
    expect(stats.deleted).toBe(1);
    expect(stats.originalLines).toBe(12);
    expect(stats.largeRewrite).toBe(false);
  });

  it('marks a file mostly replaced', () => {
    const stats = diffStats(patch('something else entirely\n'), original);
    expect(stats.deleted).toBe(12);
    expect(stats.added).toBe(1);
    expect(stats.largeRewrite).toBe(true);
  });

  it('marks a rewrite from half the lines', () => {
    const lines = original.split('\n');
    const halfChanged = lines.map((line, index) => (index < 6 ? `${line}!` : line)).join('\n');
    expect(diffStats(patch(halfChanged), original).deleted).toBe(6);
    expect(diffStats(patch(halfChanged), original).largeRewrite).toBe(true);
    const lessThanHalf = lines.map((line, index) => (index < 5 ? `${line}!` : line)).join('\n');
    expect(diffStats(patch(lessThanHalf), original).largeRewrite).toBe(false);
  });

  it('leaves short files unmarked', () => {
    const short = 'a\nb\nc\n';
    const stats = diffStats(createTwoFilesPatch('a/x', 'b/x', short, 'z\n', '', ''), short);
    expect(stats.deleted).toBe(3);
    expect(stats.largeRewrite).toBe(false);
  });
});

describe('countLines', () => {
  it('counts lines of a text', () => {
    expect(countLines('')).toBe(0);
    expect(countLines('a')).toBe(1);
    expect(countLines('a\n')).toBe(1);
    expect(countLines('a\nb')).toBe(2);
    expect(countLines('a\r\nb\r\n')).toBe(2);
  });
});
