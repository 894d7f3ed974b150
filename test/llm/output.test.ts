import { describe, expect, it } from 'vitest';
import { emptyFileMarker } from '../../src/llm/empty-file-marker.ts';
import { parseModelOutput } from '../../src/llm/output.ts';

describe('parseModelOutput', () => {
  it('rejects output containing NUL', () => {
    const result = parseModelOutput('const a = 1;\0\n', 'const a = 0;\n', 'a.ts');

    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.reason).toContain('NUL character (U+0000)');
  });

  it('rejects U+FFFD the original lacks', () => {
    const result = parseModelOutput('const s = "caf\uFFFD";\n', 'const s = "café";\n', 'src/a.ts');

    expect(result).toEqual({
      ok: false,
      reason:
        'The model output for src/a.ts contains 1 replacement character (U+FFFD) that the file ' +
        "does not have. U+FFFD marks bytes that were not valid UTF-8 in the provider's " +
        'response, so the output was discarded. Regenerate this file.',
    });
  });

  it('rejects U+FFFD beyond the original count', () => {
    const original = 'const s = "\uFFFD";\nlet a = 0;\n';

    const result = parseModelOutput('const s = "\uFFFD";\nlet a = "\uFFFD\uFFFD";\n', original, 'a.ts');

    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.reason).toContain('contains 2 replacement characters (U+FFFD)');
  });

  it('rejects lone surrogates', () => {
    const cases: [string, string][] = [
      ['high at the end', 'const s = "\uD83D";\n'],
      ['low alone', 'const s = "\uDE00";\n'],
      ['two in reverse order', 'const s = "\uDE00\uD83D";\n'],
    ];
    for (const [name, text] of cases) {
      const result = parseModelOutput(text, 'const s = "";\n', 'src/a.ts');

      expect(result.ok, name).toBe(false);
      expect(result.ok ? '' : result.reason, name).toMatch(
        /^The model output for src\/a\.ts contains [12] lone UTF-16 surrogates? \(U\+D[8-F][0-9A-F]{2}(, U\+D[8-F][0-9A-F]{2})?\), /,
      );
    }
    const many = parseModelOutput('"\uDE00\uDE01\uDE02\uDE03";\n', '"";\n', 'a.ts');
    expect(many.ok ? '' : many.reason).toContain('4 lone UTF-16 surrogates (U+DE00, U+DE01, U+DE02, ...)');
    const pair = parseModelOutput('const s = "\uD83D\uDE00";\n', 'const s = "";\n', 'src/a.ts');
    expect(pair).toEqual({ ok: true, content: 'const s = "\uD83D\uDE00";\n' });
  });

  it('keeps U+FFFD the original has', () => {
    const original = 'const s = "\uFFFD";\nlet a = 0;\n';

    const result = parseModelOutput('const s = "\uFFFD";\nlet a = 1;\n', original, 'a.ts');

    expect(result).toEqual({ ok: true, content: 'const s = "\uFFFD";\nlet a = 1;\n' });
  });

  it('returns plain output unchanged', () => {
    expect(parseModelOutput('const a = 1;\n', 'const a = 0;\n', 'a.ts')).toEqual({
      ok: true,
      content: 'const a = 1;\n',
    });
  });

  it('strips one wrapping fence with a language', () => {
    const result = parseModelOutput('```typescript\nconst a = 1;\n```', 'const a = 0;\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: 'const a = 1;\n' });
  });

  it('strips a tilde fence and surrounding blank lines', () => {
    const result = parseModelOutput('\n~~~\nx = 1\n~~~\n\n', 'x = 0\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: 'x = 1\n' });
  });

  it('keeps fences nested in the wrapped file', () => {
    const markdown = '# Usage\n\n```sh\nnpm test\n```\n\nDone.\n';

    const result = parseModelOutput('````markdown\n' + markdown + '````\n', markdown, 'a.ts');

    expect(result).toEqual({ ok: true, content: markdown });
  });

  it('keeps nested fences inside a three-backtick wrapper', () => {
    const markdown = 'Run:\n```sh\nnpm test\n```\n';

    const result = parseModelOutput('```md\n' + markdown + '```', markdown, 'a.ts');

    expect(result).toEqual({ ok: true, content: markdown });
  });

  it('keeps fences in unwrapped output', () => {
    const markdown = '```sh\nnpm test\n```\n\nText after.\n';

    const result = parseModelOutput(markdown, markdown, 'a.ts');

    expect(result).toEqual({ ok: true, content: markdown });
  });

  it('keeps a fenced original that came back unwrapped', () => {
    const snippet = '```js\nconsole.log(1);\n```\n';

    expect(parseModelOutput(snippet, snippet, 'a.ts')).toEqual({ ok: true, content: snippet });
  });

  it('strips the extra layer around a fenced original', () => {
    const snippet = '```js\nrun();\n```\n';

    const result = parseModelOutput('````\n' + snippet + '````', snippet, 'a.ts');

    expect(result).toEqual({ ok: true, content: snippet });
  });

  it('checks a fenced original with long trailing spaces in linear time', () => {
    // The whole pattern used to backtrack over every split of a space run between two
    // quantifiers: 80,000 spaces took 8 s, a 200 KB file about a minute.
    const original = '```\nconsole.log(1);\n```' + ' '.repeat(200_000) + 'x\n';

    const startedAt = performance.now();
    const result = parseModelOutput('```ts\nconst a = 1;\n```', original, 'a.ts');
    const elapsedMs = performance.now() - startedAt;

    expect(result).toEqual({ ok: true, content: 'const a = 1;\n' });
    // Linear matching takes a few milliseconds; the bound leaves room for slow machines.
    expect(elapsedMs).toBeLessThan(2_000);
  });

  it('checks long tilde runs in linear time', () => {
    // The opening fence and its info string both matched tildes, so the pattern tried every
    // split of the run: two runs of 200,000 tildes took over 4 minutes.
    const tildes = '~'.repeat(200_000);
    const text = `${tildes}\nconst a = 1;\n${tildes}x`;

    const startedAt = performance.now();
    const result = parseModelOutput(text, 'const a = 0;\n', 'a.ts');
    const elapsedMs = performance.now() - startedAt;

    expect(result).toEqual({ ok: false, reason: expect.stringContaining('code fence lines') });
    // Linear matching takes a few milliseconds; the bound leaves room for slow machines.
    expect(elapsedMs).toBeLessThan(2_000);
  });

  it('does not strip a fence closed by another character', () => {
    const text = '```\nbody\n~~~';

    const result = parseModelOutput(text, '```\nold\n~~~', 'a.ts');

    expect(result).toEqual({ ok: true, content: text });
  });

  it.each([
    [
      'prose around a fenced file',
      'Here is the fixed file:\n```ts\nconst a = 1;\n```\nI removed the log.\n',
    ],
    ['a fence left open', '```ts\nconst a = 1;\n'],
    ['a closing fence alone', 'const a = 1;\n```\n'],
    ['an indented fence', 'Fixed:\n\n   ~~~\nconst a = 1;\n   ~~~\n'],
  ])('rejects %s', (_case, text) => {
    const result = parseModelOutput(text, 'const a = 0;\nconsole.log(a);\n', 'a.ts');

    expect(result).toEqual({
      ok: false,
      reason:
        'The model output contains code fence lines (``` or ~~~) that the file does not ' +
        'have, such as explanations around a fenced block, so it is not the corrected file ' +
        'alone. Request the fix again.',
    });
  });

  it('accepts fence lines that the original has as often', () => {
    const markdown = '# Notes\n\n```sh\nnpm test\n```\n';
    const fixed = '# Notes\n\n```sh\nnpm run test\n```\n';

    expect(parseModelOutput(fixed, markdown, 'a.ts')).toEqual({ ok: true, content: fixed });
  });

  it.each([
    ['an empty answer', ''],
    ['a whitespace answer', ' \n\t\n'],
    ['an empty fence', '```\n```'],
    ['a fence around blank lines', '```ts\n\n\n```'],
  ])('rejects %s', (_case, text) => {
    const result = parseModelOutput(text, 'a\n', 'a.ts');

    expect(result).toMatchObject({ ok: false, reason: expect.stringContaining('empty') });
  });

  it.each([
    ['the marker alone', '<empty-file/>', 'debugger;\n'],
    ['the marker with line breaks', '\n<empty-file/>\n', 'console.log(1);\r\n'],
    ['a fenced marker', '```\n<empty-file/>\n```', 'debugger;'],
    ['the marker for a file with a byte order mark', '<empty-file/>', '\uFEFFdebugger;\n'],
  ])('returns an empty file for %s', (_case, text, original) => {
    expect(parseModelOutput(text, original, 'a.ts')).toEqual({ ok: true, content: '' });
  });

  it.each([
    [
      'empty output without the marker',
      '```\n```',
      'The model output for src/a.ts is empty apart from white space or a code fence, and it ' +
        'lacks the marker <empty-file/> with which the model says that the corrected file is ' +
        'empty, so it was discarded as a failed response. Regenerate this file.',
    ],
    [
      'the marker with other text',
      '<empty-file/>\nconst a = 1;\n',
      'The model output for src/a.ts contains the empty-file marker <empty-file/> together with ' +
        'other text, so it is neither the corrected file nor an empty file, and it was discarded. ' +
        'Regenerate this file.',
    ],
  ])('rejects %s', (_case, text, reason) => {
    const result = parseModelOutput(text, 'debugger;\nconst a = 1;\n', 'src/a.ts');

    expect(result).toEqual({ ok: false, reason });
  });

  it('keeps the plain marker text of a file that contains it', () => {
    const original = 'Reply with <empty-file/>\ndebugger;\n';
    const marker = emptyFileMarker(original);

    expect(marker).toMatch(/^<empty-file-[0-9a-f]{16}\/>$/);
    // The file's own text is content, and only the file's marker means an empty file.
    expect(parseModelOutput('Reply with <empty-file/>\n', original, 'a.md')).toEqual({
      ok: true,
      content: 'Reply with <empty-file/>\n',
    });
    expect(parseModelOutput('<empty-file/>', original, 'a.md')).toEqual({ ok: true, content: '<empty-file/>\n' });
    expect(parseModelOutput(marker, original, 'a.md')).toEqual({ ok: true, content: '' });
  });

  it.each([
    ['the file tag', '<file path="a.ts">\nconst a = 1;\n</file>'],
    ['a nonce tag', 'const a = 1;\n</file-0123456789abcdef>'],
    ['the findings block', '<findings>\n[]\n</findings>\nconst a = 1;\n'],
  ])('rejects output with %s', (_case, text) => {
    const result = parseModelOutput(text, 'const a = 0;\n', 'a.ts');

    expect(result).toMatchObject({
      ok: false,
      reason: expect.stringContaining('data block tags'),
    });
  });

  it('accepts tags that the original contains too', () => {
    const xml = '<files>\n  <file path="a">old</file>\n</files>\n';
    const fixed = '<files>\n  <file path="a">new</file>\n</files>\n';

    expect(parseModelOutput(fixed, xml, 'a.ts')).toEqual({ ok: true, content: fixed });
  });

  it.each(['</file', '</findings', '<file'])('accepts a fix of a file ending in %s', (ending) => {
    // In the prompt a line break follows the content, so the ending is a tag there. The
    // output's final line break makes it one in the output too.
    const result = parseModelOutput(`const a = 1;\n${ending}\n`, `const a = 0;\n${ending}`, 'a.ts');

    expect(result).toEqual({ ok: true, content: `const a = 1;\n${ending}` });
  });

  it('rejects output that adds a tag at its end', () => {
    const result = parseModelOutput('const a = 1;\n</file\n', 'const a = 0;\n', 'a.ts');

    expect(result).toMatchObject({ ok: false, reason: expect.stringContaining('data block tags') });
  });

  it('restores a byte order mark the output dropped', () => {
    const result = parseModelOutput('const a = 1;\n', '\uFEFFconst a = 0;\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: '\uFEFFconst a = 1;\n' });
  });

  it('removes a byte order mark the output added', () => {
    const result = parseModelOutput('\uFEFFconst a = 1;\n', 'const a = 0;\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: 'const a = 1;\n' });
  });

  it('restores CRLF line endings', () => {
    const result = parseModelOutput('```\none\ntwo\n```', 'uno\r\ndos\r\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: 'one\r\ntwo\r\n' });
  });

  it('restores LF line endings', () => {
    const result = parseModelOutput('one\r\ntwo\r\n', 'uno\ndos\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: 'one\ntwo\n' });
  });

  it.each([
    ['an LF file', 'uno\ndos\n', 'one\ntwo\n'],
    ['a CRLF file', 'uno\r\ndos\r\n', 'one\r\ntwo\r\n'],
    ['a file without line breaks', 'uno', 'one\ntwo'],
  ])('turns lone CR line breaks into those of %s', (_case, original, expected) => {
    const result = parseModelOutput('one\rtwo\r', original, 'a.ts');

    expect(result).toEqual({ ok: true, content: expected });
  });

  it('keeps lone CRs that the original has', () => {
    const result = parseModelOutput('a = "\r";\rb = 1;\n', 'a = "\r";\nb = 0;\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: 'a = "\r";\rb = 1;\n' });
  });

  it('leaves mixed line endings alone', () => {
    const result = parseModelOutput('one\ntwo\n', 'uno\r\ndos\n', 'a.ts');

    expect(result).toEqual({ ok: true, content: 'one\ntwo\n' });
  });

  it('adds the missing final newline', () => {
    expect(parseModelOutput('a = 1', 'a = 0\n', 'a.ts')).toEqual({ ok: true, content: 'a = 1\n' });
    expect(parseModelOutput('a = 1\nb = 2', 'a = 0\r\nb = 2\r\n', 'a.ts')).toEqual({
      ok: true,
      content: 'a = 1\r\nb = 2\r\n',
    });
  });

  it('removes an added final newline', () => {
    expect(parseModelOutput('a = 1\n', 'a = 0', 'a.ts')).toEqual({ ok: true, content: 'a = 1' });
    expect(parseModelOutput('a\r\nb\r\n', 'a\r\nc', 'a.ts')).toEqual({ ok: true, content: 'a\r\nb' });
  });
});
