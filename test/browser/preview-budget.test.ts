import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimateFileCalls } from '../../src/autofix/preview-budget.ts';
import { listRunFindings } from '../../src/runs/run-findings.ts';
import { installer, openSignedInPage, screenshot, startDashboard, type Dashboard } from './harness.ts';

let dashboard: Dashboard;
let page: Page;

beforeAll(async () => {
  dashboard = await startDashboard();
  await dashboard.openPullRequest();
  page = await openSignedInPage(dashboard);
  await dashboard.database.sql`
    UPDATE users SET plan = 'free', token_limit = 1000, tokens_used = 0, tokens_reserved = 0
    WHERE github_id = ${installer.id}
  `;
});

afterAll(async () => {
  await dashboard?.close();
});

/** Returns each file's estimate and whether its findings are checked, in page order. */
async function readFiles() {
  return page.locator('fieldset.file-findings').evaluateAll((fieldsets) =>
    fieldsets.map((fieldset) => ({
      tokens: Number(fieldset.querySelector('[data-tokens]')!.getAttribute('data-tokens')),
      checked: fieldset.querySelector<HTMLInputElement>('input[name="findingIds"]')!.checked,
    })),
  );
}

const selectedTokens = () => page.locator('[data-selected-tokens]').textContent();
const overAllowance = () => page.locator('[data-over-allowance]').isVisible();
const previewButtonDisabled = () => page.getByRole('button', { name: 'Preview fix' }).isDisabled();
const nothingCheckedShown = () => page.locator('[data-nothing-checked]').isVisible();

describe('preview form total in Chromium', () => {
  it('updates the total when a file is checked', async () => {
    await page.getByRole('link', { name: 'Codertocat/Hello-World#2' }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    const files = await readFiles();
    expect(files).toHaveLength(2);
    const checked = files.filter((file) => file.checked);
    expect(checked).toHaveLength(1);
    expect(await selectedTokens()).toBe(checked[0]!.tokens.toLocaleString('en-US'));
    // The analysis recorded both files' sizes, so the estimates include their content.
    expect(await page.locator('[data-selected-estimate]').textContent()).toBe('about');
    expect(await overAllowance()).toBe(false);
    await screenshot(page, 'preview-budget-default');

    const uncheckedIndex = files.findIndex((file) => !file.checked);
    await page.locator('fieldset.file-findings').nth(uncheckedIndex).locator('input[name="findingIds"]').check();
    const total = files[0]!.tokens + files[1]!.tokens;
    await expect.poll(selectedTokens).toBe(total.toLocaleString('en-US'));
    expect(await page.locator('[data-selected-files]').textContent()).toBe('2 files');
    await expect.poll(overAllowance).toBe(true);
    expect(await page.locator('[data-over-allowance]').textContent()).toBe(
      'The checked findings need more tokens than your allowance has left, so the preview would ' +
        'be rejected. Uncheck findings until the total fits.',
    );
    await screenshot(page, 'preview-budget-over');
  });

  it('shows the rejection of a selection over the allowance', async () => {
    await page.getByRole('button', { name: 'Preview fix' }).click();
    await expect
      .poll(() => page.locator('#preview-progress').textContent())
      .toContain('Not enough token allowance left');
    expect(await page.locator('#preview-progress').textContent()).toContain(
      'the selection of 2 files needs minimum reservations of about',
    );
  });

  it('updates the total when a file is unchecked', async () => {
    const boxes = page.locator('input[name="findingIds"]');
    const count = await boxes.count();
    for (let index = 0; index < count; index++) await boxes.nth(index).uncheck();
    await expect.poll(selectedTokens).toBe('0');
    expect(await page.locator('[data-selected-files]').textContent()).toBe('0 files');
    expect(await overAllowance()).toBe(false);
    expect(await previewButtonDisabled()).toBe(true);
    expect(await nothingCheckedShown()).toBe(true);
    expect(await page.locator('[data-nothing-checked]').textContent()).toBe(
      'No finding is checked. Check at least one finding to preview its fix.',
    );
    expect(await page.locator('[data-over-allowance]').textContent()).toBe('');
    await screenshot(page, 'preview-budget-nothing-checked');
  });

  it('totals only the checked findings of a file', async () => {
    // Two more findings in src/app.ts: one of the console.log finding's kind, whose fix guidance
    // counts once, and one of another kind, whose guidance adds to the prompt.
    await dashboard.database.sql`
      INSERT INTO findings (run_id, path, start_line, end_line, rule_id, severity, message, fingerprint, file_bytes)
      SELECT run_id, path, start_line + extra.line_offset, end_line + extra.line_offset, extra.rule_id, 'warning',
             extra.message, fingerprint || extra.suffix, file_bytes
      FROM findings,
           (VALUES (1, 'debug/debugger', 'A debugger statement was added, so remove it.', '-second'),
                   (2, 'todo-comment', 'A TODO comment was added.', '-third'))
             AS extra(line_offset, rule_id, message, suffix)
      WHERE path = 'src/app.ts'
    `;
    await page.reload();
    const runId = /\/runs\/([0-9a-f-]{36})$/.exec(page.url())![1]!;
    const rows = (await listRunFindings(dashboard.database.db, runId)).filter((row) => row.path === 'src/app.ts');
    expect(rows.map((row) => row.ruleId).sort()).toEqual(['debug/console-log', 'debug/debugger', 'todo-comment']);
    const boxes = page.locator('input[name="findingIds"]');
    const count = await boxes.count();
    for (let index = 0; index < count; index++) await boxes.nth(index).uncheck();

    const allTokens = estimateFileCalls(rows)[0]!.tokens;
    const subsets = [[0], [1], [2], [0, 1], [0, 2], [1, 2]].map((indexes) => indexes.map((index) => rows[index]!));
    for (const subset of subsets) {
      for (const row of subset) await page.locator(`input[value="${row.id}"]`).check();
      const subsetTokens = estimateFileCalls(subset)[0]!.tokens;
      expect(subsetTokens).toBeLessThan(allTokens);
      await expect.poll(selectedTokens).toBe(subsetTokens.toLocaleString('en-US'));
      expect(await page.locator('[data-selected-files]').textContent()).toBe('1 file');
      for (const row of subset) await page.locator(`input[value="${row.id}"]`).uncheck();
    }
    for (const row of rows) await page.locator(`input[value="${row.id}"]`).check();
    await expect.poll(selectedTokens).toBe(allTokens.toLocaleString('en-US'));
    expect(await previewButtonDisabled()).toBe(false);
    expect(await nothingCheckedShown()).toBe(false);
  });

  it('disables Preview fix when nothing fits', async () => {
    await dashboard.database.sql`UPDATE users SET tokens_used = token_limit WHERE github_id = ${installer.id}`;
    // A new navigation, because a reload may restore the checkboxes' earlier state.
    await page.goto(page.url());
    expect(await page.locator('input[name="findingIds"]:checked').count()).toBe(0);
    expect(await previewButtonDisabled()).toBe(true);
    expect(await nothingCheckedShown()).toBe(true);

    await page.locator('input[name="findingIds"]').first().check();
    await expect.poll(previewButtonDisabled).toBe(false);
    expect(await nothingCheckedShown()).toBe(false);
  });
});

describe('preview form past 1,000 findings in Chromium', () => {
  const tooManyShown = () => page.locator('[data-too-many-findings]').isVisible();

  it('submits the 1,000 findings checked by default', async () => {
    const runId = /\/runs\/([0-9a-f-]{36})$/.exec(page.url())![1]!;
    await dashboard.database.sql`
      UPDATE users SET plan = 'enterprise', token_limit = -1, tokens_used = 0
      WHERE github_id = ${installer.id}
    `;
    // 1,200 more warnings and notices, so that the run has more findings than a preview takes.
    await dashboard.database.sql`
      INSERT INTO findings (run_id, path, start_line, end_line, rule_id, severity, message, fingerprint, file_bytes)
      SELECT ${runId}, CASE WHEN n % 2 = 0 THEN 'src/app.ts' ELSE 'scripts/tool.py' END, 100 + n, 100 + n,
             'debug/console-log', CASE WHEN n % 3 = 0 THEN 'warning' ELSE 'notice' END,
             'Remove the console.log call.', 'fp-many-' || n, NULL
      FROM generate_series(1, 1200) AS n
    `;
    await page.goto(page.url());

    expect(await page.locator('input[name="findingIds"]').count()).toBeGreaterThan(1200);
    expect(await page.locator('input[name="findingIds"]:checked').count()).toBe(1000);
    expect(await page.locator('.preview-over-limit').textContent()).toContain(
      'A preview takes at most 1,000 findings, so only the first 1,000, the most severe first, are checked.',
    );
    expect(await tooManyShown()).toBe(false);
    expect(await previewButtonDisabled()).toBe(false);
    await screenshot(page, 'preview-budget-over-limit');

    await page.getByRole('button', { name: 'Preview fix' }).click();
    await expect.poll(() => page.locator('#preview-progress .patch-progress').count()).toBe(1);
    expect(await page.locator('#preview-progress').textContent()).not.toContain('Too many');
    const [row] = await dashboard.database.sql<{ count: number }[]>`
      SELECT count(*)::int AS count FROM patch_request_findings prf
      JOIN patch_requests pr ON pr.id = prf.patch_request_id
      WHERE pr.run_id = ${runId}
      AND pr.created_at = (SELECT max(created_at) FROM patch_requests WHERE run_id = ${runId})
    `;
    expect(row!.count).toBe(1000);
  });

  it('disables Preview fix past 1,000 checked findings', async () => {
    await page.locator('input[name="findingIds"]:not(:checked)').first().check();
    await expect.poll(tooManyShown).toBe(true);
    expect(await previewButtonDisabled()).toBe(true);

    await page.locator('input[name="findingIds"]:checked').first().uncheck();
    await expect.poll(tooManyShown).toBe(false);
    expect(await previewButtonDisabled()).toBe(false);
  });
});
