import { describe, expect, it } from 'vitest';
import {
  codeSpan,
  maxCommentLength,
  summaryCommentBody,
} from '../../src/report/summary-markdown.ts';

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
      [
        {
          path,
          startLine: 2,
          endLine: 2,
          ruleId: 'debug/console-log',
          severity: 'warning',
          message: 'm',
        },
      ],
      'https://github.example/checks/1',
    );
    const rows = body.split(/\r\n|\r|\n/).filter((line) => line.startsWith('| warning'));
    expect(rows).toEqual([
      String.raw`| warning | ${'`'}x \| ![t](https://evil.example/t.png) @org/admins \| x \| x \| ` +
        String.raw`.js${'`'}:2 | ${'`'}debug/console-log${'`'} | m |`,
    ]);
    expect(body).not.toContain('\r');
  });
});

describe('summaryCommentBody length', () => {
  const run = { repository: 'octo/demo', prNumber: 1, headSha: 'b'.repeat(40) };

  it('stays within GitHub comment limit', () => {
    // Git puts no limit on path length, so 30 long paths would exceed 65,536 characters.
    const findings = Array.from({ length: 30 }, (_, index) => ({
      path: `${'d/'.repeat(1250)}file${index}.ts`,
      startLine: 2,
      endLine: 2,
      ruleId: 'debug/console-log',
      severity: 'warning' as const,
      message: 'm',
    }));
    const body = summaryCommentBody(run, findings, 'https://github.example/checks/1');

    expect(body.length).toBeLessThanOrEqual(maxCommentLength);
    const rows = body.split('\n').filter((line) => line.startsWith('| warning'));
    expect(rows.length).toBe(25);
    expect(body).toContain('\n\n5 more findings in the check run.\n');
    expect(body.endsWith('This comment is updated in place for every new commit.')).toBe(true);
  });
});
