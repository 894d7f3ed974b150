import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installer, screenshot, signIn, startDashboard, type Dashboard } from './harness.ts';

let dashboard: Dashboard;
let page: Page;

beforeAll(async () => {
  dashboard = await startDashboard();
  await dashboard.openPullRequest();
  const browserContext = await dashboard.browser.newContext({ viewport: { width: 1200, height: 900 } });
  page = await browserContext.newPage();
  page.setDefaultTimeout(20_000);
  await signIn(page, dashboard);
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
    await screenshot(page, 'preview-budget-over');
  });

  it('shows the rejection of a selection over the allowance', async () => {
    await page.getByRole('button', { name: 'Preview fix' }).click();
    await expect
      .poll(() => page.locator('#preview-progress').textContent())
      .toContain('Not enough token allowance left');
    expect(await page.locator('#preview-progress').textContent()).toContain('the selection of 2 files needs about');
  });

  it('updates the total when a file is unchecked', async () => {
    const boxes = page.locator('input[name="findingIds"]');
    const count = await boxes.count();
    for (let index = 0; index < count; index++) await boxes.nth(index).uncheck();
    await expect.poll(selectedTokens).toBe('0');
    expect(await page.locator('[data-selected-files]').textContent()).toBe('0 files');
    expect(await overAllowance()).toBe(false);
  });
});
