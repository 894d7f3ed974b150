import { describe, expect, it } from 'vitest';
import { codeSpan, summaryCommentBody } from '../../src/report/summary-markdown.ts';

describe('codeSpan', () => {
  it('fences a plain path with one backtick', () => {
    expect(codeSpan('src/app.ts')).toBe('`src/app.ts`');
  });

  it('keeps backticks in a path from closing the span', () => {
    const path = 'x`[Click](https://evil.example) @org/admins`.js';
    expect(codeSpan(path)).toBe('`` x`[Click](https://evil.example) @org/admins`.js ``');
  });

  it('outruns the longest backtick run', () => {
    expect(codeSpan('a```b')).toBe('```` a```b ````');
  });
});

describe('summaryCommentBody', () => {
  const run = { repository: 'octo/demo', prNumber: 1, headSha: 'b'.repeat(40) };

  it('keeps a path with a lone CR in its row', () => {
    // CommonMark ends a line at a lone CR too, so the rest of the path would start a new row.
    const path = 'x\r| ![t](https://evil.example/t.png) @org/admins | x | x |\r.js';
    const body = summaryCommentBody(
      run,
      [{ path, startLine: 2, endLine: 2, ruleId: 'debug/console-log', severity: 'warning', message: 'm' }],
      'https://github.example/checks/1',
    );
    const rows = body.split(/\r\n|\r|\n/).filter((line) => line.startsWith('| warning'));
    expect(rows).toEqual([
      String.raw`| warning | ${'`'}x \| ![t](https://evil.example/t.png) @org/admins \| x \| x \| .js${'`'}:2 | ${'`'}debug/console-log${'`'} | m |`,
    ]);
    expect(body).not.toContain('\r');
  });
});
