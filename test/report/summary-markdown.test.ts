import { describe, expect, it } from 'vitest';
import { codeSpan } from '../../src/report/summary-markdown.ts';

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
