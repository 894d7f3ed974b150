import { describe, expect, it } from 'vitest';
import {
  checkRunOutput,
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

describe('coverage notes', () => {
  const run = { repository: 'octo-org/widgets', prNumber: 1, headSha: 'a'.repeat(40) };

  it('names ten unchecked files and counts the rest', () => {
    const uncheckedFiles = Array.from({ length: 12 }, (_, index) => `f${index}.ts`);
    const { summary } = checkRunOutput({ ...run, uncheckedFiles }, [], 'success');
    const named = uncheckedFiles.slice(0, 10).map((path) => `\`${path}\``);
    expect(summary).toContain(
      'GitHub sent no diff for 12 files with added lines and Fixwright could not build one (for ' +
        'example for a version over 5 MB or not UTF-8 text), so their added lines were not ' +
        `checked: ${named.join(', ')} and 2 more files.`,
    );
  });

  it('counts unlisted files in the comment', () => {
    const body = summaryCommentBody({ ...run, unlistedFiles: 1 }, [], 'https://x.test/c');
    expect(body).toContain(
      'GitHub lists at most 3,000 files of a pull request, so the added lines of 1 further ' +
        'file were not checked.',
    );
  });

  it('counts omitted findings', () => {
    const { summary } = checkRunOutput({ ...run, omittedFindings: 2 }, [], 'success');
    expect(summary).toContain(
      'Fixwright keeps the 10,000 most severe findings of a run, so 2 further findings of the ' +
        'same or lower severity are left out.',
    );
  });

  it('adds no note when every file was checked', () => {
    const { summary } = checkRunOutput({ ...run, uncheckedFiles: [] }, [], 'success');
    expect(summary).not.toContain('GitHub');
  });
});

describe('summaryCommentBody table', () => {
  const run = { repository: 'octo-org/widgets', prNumber: 1, headSha: 'a'.repeat(40) };

  it('keeps a path with a carriage return in its row', () => {
    const finding = {
      path: 'src/a\r# Approved by the security team.ts',
      startLine: 3,
      endLine: 3,
      ruleId: 'todo-comment',
      severity: 'notice' as const,
      message: 'A new TODO comment marks unfinished work.',
    };
    const body = summaryCommentBody(run, [finding], 'https://x.test/c');
    expect(body).not.toContain('\r');
    expect(body.split('\n')).toContain(
      '| notice | `src/a # Approved by the security team.ts`:3 | `todo-comment` | ' +
        'A new TODO comment marks unfinished work. |',
    );
  });
});

describe('paths with control characters', () => {
  const run = { repository: 'octo-org/widgets', prNumber: 1, headSha: 'a'.repeat(40) };

  it('shows bidi controls as code points', () => {
    // U+202E reverses the text after it, so the file list would read as something else.
    const uncheckedFiles = ['src/\u202Esj.txt', 'src/\u2066b\u2069.ts'];
    const { summary } = checkRunOutput({ ...run, uncheckedFiles }, [], 'success');
    expect(summary).not.toMatch(/[\u202A-\u202E\u2066-\u2069]/);
    expect(summary).toContain('`src/<U+202E>sj.txt` and `src/<U+2066>b<U+2069>.ts`');
  });

  it('shows C0 controls in a table row as code points', () => {
    const finding = {
      path: 'src/\u0008\u001b[2Ka.ts',
      startLine: 1,
      endLine: 1,
      ruleId: 'todo-comment',
      severity: 'notice' as const,
      message: 'A new TODO comment marks unfinished work.',
    };
    const body = summaryCommentBody(run, [finding], 'https://x.test/c');
    expect(body).toContain('`src/<U+0008><U+001B>[2Ka.ts`:1');
  });

  it('shows invisible characters as code points', () => {
    const uncheckedFiles = ['src/log\u200Bin.ts', 'src/\uFEFFmain.ts', 'src/a\u2028b.ts'];
    const { summary } = checkRunOutput({ ...run, uncheckedFiles }, [], 'success');
    expect(summary).toContain('`src/log<U+200B>in.ts`, `src/<U+FEFF>main.ts` and `src/a<U+2028>b.ts`');
  });

  it('keeps joiners, which emoji and scripts need', () => {
    const uncheckedFiles = ['docs/\u{1F468}\u200D\u{1F4BB}.md', 'fa/\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645.md'];
    const { summary } = checkRunOutput({ ...run, uncheckedFiles }, [], 'success');
    expect(summary).toContain(`\`${uncheckedFiles[0]}\` and \`${uncheckedFiles[1]}\``);
  });
});

describe('summary length', () => {
  const run = { repository: 'octo-org/widgets', prNumber: 1, headSha: 'a'.repeat(40) };
  const longPath = `src/${'deep/'.repeat(800)}config.ts`;

  it('fits the comment limit with long paths', () => {
    const findings = Array.from({ length: 30 }, (_, index) => ({
      path: longPath,
      startLine: index + 1,
      endLine: index + 1,
      ruleId: 'todo-comment',
      severity: 'notice' as const,
      message: 'A new TODO comment marks unfinished work.',
    }));
    const uncheckedFiles = Array.from({ length: 10 }, (_, index) => `${longPath}${index}`);
    const body = summaryCommentBody({ ...run, uncheckedFiles }, findings, 'https://x.test/c');
    expect(body.length).toBeLessThanOrEqual(65536);
    expect(body).toContain(`\`src/deep/deep/`);
    expect(body).toContain('…');
    expect(body).toContain('deep/config.ts`:30');
  });

  it('fits the comment limit with long messages', () => {
    const findings = Array.from({ length: 30 }, (_, index) => ({
      path: `src/file${index}.ts`,
      startLine: 2,
      endLine: 2,
      ruleId: 'debug/console-log',
      severity: 'warning' as const,
      message: 'm'.repeat(3000),
    }));
    const body = summaryCommentBody(run, findings, 'https://x.test/c');

    expect(body.length).toBeLessThanOrEqual(maxCommentLength);
    const rows = body.split('\n').filter((line) => line.startsWith('| warning'));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(25);
    expect(body).toContain(`\n\n${30 - rows.length} more findings in the check run.\n`);
    expect(body.endsWith('This comment is updated in place for every new commit.')).toBe(true);
  });
});

describe('Fix with AI sentence', () => {
  const run = { repository: 'octo-org/widgets', prNumber: 1, headSha: 'a'.repeat(40) };

  /** Returns `count` warnings, each on its own line of one file. */
  function warnings(count: number) {
    return Array.from({ length: count }, (_, index) => ({
      path: 'src/app.ts',
      startLine: index + 1,
      endLine: index + 1,
      ruleId: 'debug/console-log',
      severity: 'warning' as const,
      message: 'A console.log call was added.',
    }));
  }

  const allowanceText =
    'The preview is charged to the token allowance of the user who installed the app, unless ' +
    "that user's own Groq or Gemini key pays, and findings whose fixes do not fit what is left " +
    'of that allowance are left out. Each press writes on this check run what it queued and ' +
    'what it left out.';

  it('names the allowance as the limit', () => {
    const { summary } = checkRunOutput(run, warnings(3), 'neutral');

    expect(summary).toContain(
      `Each finding is annotated on its line. **Fix with AI** previews fixes for them. ${allowanceText}`,
    );
    expect(summary).not.toContain('all of them');
  });

  it('names the finding limit past 1,000', () => {
    const { summary } = checkRunOutput(run, warnings(1001), 'neutral');

    expect(summary).toContain(
      "and the run's page on the Fixwright dashboard lists all of them. **Fix with AI** previews " +
        `fixes for at most 1,000 of them, the most severe first. ${allowanceText}`,
    );
  });

  it('leaves the sentence out without findings', () => {
    const { summary } = checkRunOutput(run, [], 'success');

    expect(summary).not.toContain('Fix with AI');
  });
});
