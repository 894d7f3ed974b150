import { describe, expect, it } from 'vitest';
import { addedLines, changedLineRanges } from '../../src/analysis/patch.ts';

// Two hunks as GitHub returns them: no file headers, function context after the second `@@`.
const TWO_HUNKS = [
  '@@ -1,5 +1,6 @@',
  " import { readFile } from 'node:fs/promises';",
  "+import path from 'node:path';",
  ' ',
  ' export async function load(name) {',
  '-  return readFile(name);',
  "+  return readFile(path.resolve(name), 'utf8');",
  ' }',
  '@@ -20,4 +21,6 @@ export function save(name, data) {',
  '   const target = name;',
  '+  // Write atomically.',
  '+  const temporary = `${target}.tmp`;',
  '   return writeFile(target, data);',
  ' }',
].join('\n');

describe('addedLines', () => {
  it('numbers added lines across hunks', () => {
    expect(addedLines(TWO_HUNKS)).toEqual([
      { line: 2, text: "import path from 'node:path';" },
      { line: 5, text: "  return readFile(path.resolve(name), 'utf8');" },
      { line: 22, text: '  // Write atomically.' },
      { line: 23, text: '  const temporary = `${target}.tmp`;' },
    ]);
  });

  it('ignores removed and context lines', () => {
    const texts = addedLines(TWO_HUNKS).map((added) => added.text);
    expect(texts).not.toContain('  return readFile(name);');
    expect(texts).not.toContain('  const target = name;');
  });

  it('numbers a new file from line 1', () => {
    const patch = '@@ -0,0 +1,3 @@\n+first\n+second\n+third';
    expect(addedLines(patch)).toEqual([
      { line: 1, text: 'first' },
      { line: 2, text: 'second' },
      { line: 3, text: 'third' },
    ]);
  });

  it('reads hunk headers with omitted counts', () => {
    const patch = '@@ -1 +1 @@\n-old title\n+new title\n@@ -9 +9,2 @@\n last\n+appended';
    expect(addedLines(patch)).toEqual([
      { line: 1, text: 'new title' },
      { line: 10, text: 'appended' },
    ]);
  });

  it('skips no-newline markers', () => {
    const patch = [
      '@@ -1,2 +1,3 @@',
      ' a',
      '-b',
      '\\ No newline at end of file',
      '+b',
      '+c',
      '\\ No newline at end of file',
    ].join('\n');
    expect(addedLines(patch)).toEqual([
      { line: 2, text: 'b' },
      { line: 3, text: 'c' },
    ]);
  });

  it('strips CRLF line endings', () => {
    const patch = '@@ -1,2 +1,3 @@\r\n first\r\n+second\r\n third\r\n';
    expect(addedLines(patch)).toEqual([{ line: 2, text: 'second' }]);
  });

  it('skips file headers of a full diff', () => {
    const patch = [
      'diff --git a/old.txt b/new.txt',
      'index 83db48f..bf269f4 100644',
      '--- a/old.txt',
      '+++ b/new.txt',
      '@@ -1,2 +1,2 @@',
      ' keep',
      '-drop',
      '+add',
    ].join('\n');
    expect(addedLines(patch)).toEqual([{ line: 2, text: 'add' }]);
  });

  it('ends a hunk after its line counts', () => {
    // Without the counts, the second file's `+++` header would read as an added line.
    const patch = [
      '--- a/first.txt',
      '+++ b/first.txt',
      '@@ -1,2 +1,1 @@',
      ' keep',
      '-drop',
      'diff --git a/second.txt b/second.txt',
      '--- a/second.txt',
      '+++ b/second.txt',
      '@@ -5,0 +6,1 @@',
      '+added',
    ].join('\n');
    expect(addedLines(patch)).toEqual([{ line: 6, text: 'added' }]);
  });

  it('keeps added lines that start with +++ or ---', () => {
    const patch = '@@ -1,1 +1,3 @@\n heading\n++++ plus\n+--- dashes';
    expect(addedLines(patch)).toEqual([
      { line: 2, text: '+++ plus' },
      { line: 3, text: '--- dashes' },
    ]);
  });

  it('counts an empty line as context', () => {
    // Some tools strip the leading space of an empty context line.
    const patch = '@@ -1,3 +1,4 @@\n a\n\n b\n+c';
    expect(addedLines(patch)).toEqual([{ line: 4, text: 'c' }]);
  });

  it('keeps an added empty line', () => {
    expect(addedLines('@@ -0,0 +1,2 @@\n+\n+x')).toEqual([
      { line: 1, text: '' },
      { line: 2, text: 'x' },
    ]);
  });

  it('returns nothing for an empty patch', () => {
    expect(addedLines('')).toEqual([]);
  });
});

describe('changedLineRanges', () => {
  it('covers each hunk on the new side', () => {
    expect(changedLineRanges(TWO_HUNKS)).toEqual([
      { start: 1, end: 6 },
      { start: 21, end: 26 },
    ]);
  });

  it('treats omitted counts as one line', () => {
    expect(changedLineRanges('@@ -3 +3 @@\n-a\n+b')).toEqual([{ start: 3, end: 3 }]);
  });

  it('leaves out hunks that only remove lines', () => {
    const patch = '@@ -4,2 +3,0 @@\n-gone\n-also gone\n@@ -10,1 +8,2 @@\n kept\n+new';
    expect(changedLineRanges(patch)).toEqual([{ start: 8, end: 9 }]);
  });
});
