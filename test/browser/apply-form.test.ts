// Each files fragment that htmx polls carries the preview page's Apply form out of band. While
// Apply's own request is in flight, such a fragment must not swap in a form with an enabled
// button. The form of the newest fragment replaces it once the request ends.
import type { Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBothFindings,
  installer,
  openSignedInPage,
  screenshot,
  startDashboard,
  type Dashboard,
} from './harness.ts';

let dashboard: Dashboard;
let page: Page;

beforeAll(async () => {
  dashboard = await startDashboard();
  await dashboard.openPullRequest();
  page = await openSignedInPage(dashboard);
  // The free plan's 1,000 tokens cannot pay for two files, so preview on Pro.
  await dashboard.database.sql`
    UPDATE users SET plan = 'pro', token_limit = 100000 WHERE github_id = ${installer.id}
  `;
});

afterAll(async () => {
  await dashboard?.close();
});

/** Previews both files of the pull request from its run page and opens the preview. */
async function openNewPreview() {
  await checkBothFindings(page);
  await page.getByRole('button', { name: 'Preview fix' }).click();
  const openPreview = page.getByRole('link', { name: 'Open the preview' });
  await openPreview.waitFor({ state: 'visible', timeout: 30_000 });
  await openPreview.click();
  await page.waitForURL(/\/patch-requests\/[0-9a-f-]{36}$/);
  await expect.poll(() => page.locator('section.patch-file').count()).toBe(2);
}

const applyButton = () => page.getByRole('button', { name: 'Apply' });
const formVersion = () => page.locator('#apply-form input[name="previewVersion"]').inputValue();
const applyResult = () => page.locator('#apply-result').textContent();

/** Returns the `previewVersion` of the Apply form that the server renders for the preview now. */
async function serverVersion(): Promise<string> {
  const response = await page.request.get(page.url());
  expect(response.status()).toBe(200);
  const version = /name="previewVersion" value="([^"]*)"/.exec(await response.text())?.[1];
  expect(version).toBeDefined();
  return version!;
}

describe('Apply form in Chromium', () => {
  it('stays disabled while its request runs', async () => {
    await openNewPreview();
    const toolFile = page.locator('section.patch-file[data-path="scripts/tool.py"]');
    const toolFileId = (await toolFile.getAttribute('id'))!.replace(/^file-/, '');
    const seenVersion = await formVersion();
    expect(seenVersion).toContain(`${toolFileId}:0:`);
    expect(await applyButton().isDisabled()).toBe(false);

    // The Apply request is held back in the browser, as on a slow network, so the regeneration
    // below reaches the server first.
    const heldRoutes: Route[] = [];
    await page.route('**/api/patch-requests/*/apply', (route) => {
      heldRoutes.push(route);
    });
    await applyButton().click();
    await expect.poll(() => heldRoutes.length).toBe(1);
    expect(await applyButton().isDisabled()).toBe(true);

    // The regeneration's fragment and the panel's polls until the file is ready again each carry
    // the Apply form, the last one with an enabled button.
    let fragments = 0;
    page.on('response', (response) => {
      if (/\/patch-requests\/[0-9a-f-]{36}\/(files|files\/[0-9a-f-]{36}\/regenerate)$/.test(response.url())) {
        fragments += 1;
      }
    });
    // The regeneration returns another fix, so the diff on screen changes. A regeneration with
    // the same diff would write the same text, and the held Apply would then succeed.
    dashboard.groq.setHandler(() => ({ text: 'def run(values):\n    return sum(values)\n' }));
    await toolFile.getByRole('button', { name: 'Regenerate this file' }).click();
    await expect
      .poll(() => page.locator('#patch-files').getAttribute('data-status'), { timeout: 30_000 })
      .toBe('running');
    await expect
      .poll(() => page.locator('#patch-files').getAttribute('data-status'), { timeout: 30_000 })
      .toBe('ready');
    expect(fragments).toBeGreaterThanOrEqual(2);
    expect(await applyButton().isDisabled()).toBe(true);
    expect(await formVersion()).toBe(seenVersion);
    await screenshot(page, 'apply-form-during-request');

    await heldRoutes[0]!.continue();
    await page.unroute('**/api/patch-requests/*/apply');
    await expect.poll(applyResult, { timeout: 30_000 }).toMatch(/HTTP \d{3}/);
    expect(await applyResult()).toContain(
      'HTTP 409: The preview changed since you opened it (scripts/tool.py changed); reload it ' +
        'and review it again before you apply.',
    );

    // Once the request ended, the form carries the version of the files on screen.
    await expect.poll(formVersion).toContain(`${toolFileId}:1:`);
    expect(await formVersion()).toBe(await serverVersion());
    expect(await applyButton().isDisabled()).toBe(false);
    await screenshot(page, 'apply-form-after-request');

    await applyButton().click();
    await expect.poll(applyResult, { timeout: 30_000 }).toMatch(/HTTP 200/);
    expect(await applyResult()).toMatch(/HTTP 200: Applied 2 files as commit [0-9a-f]{7}\./);
  });

  it('marks invisible characters in the response', async () => {
    // A response that names a file with a left-to-right isolate (U+2066) and its pop (U+2069),
    // which a pull request may add, sent in place of the API's.
    const message = 'The preview changed since you opened it (src/\u2066a\u2069.ts changed).';
    await page.route('**/api/patch-requests/*/apply', (route) =>
      route.fulfill({
        status: 409,
        contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'conflict', message } }),
      }),
    );
    await applyButton().click();
    await expect.poll(applyResult, { timeout: 30_000 }).toMatch(/HTTP 409/);
    await page.unroute('**/api/patch-requests/*/apply');

    const result = page.locator('#apply-result');
    expect(await result.locator('p.error').textContent()).toBe(
      'HTTP 409: The preview changed since you opened it (src/U+2066aU+2069.ts changed).',
    );
    expect(await result.locator('p.error .char-mark').count()).toBe(2);
    expect(await result.locator('pre.json .char-mark').count()).toBe(2);
    expect(await result.locator('pre.json').textContent()).toContain('src/U+2066aU+2069.ts');
    expect(await result.locator('.char-mark').first().getAttribute('title')).toBe(
      'U+2066 LEFT-TO-RIGHT ISOLATE, shown in place of the invisible character',
    );
  });

  it('shows progress while applying', async () => {
    const progress = page.locator('#apply-form [role="status"]');
    expect(await progress.isVisible()).toBe(false);
    const heldRoutes: Route[] = [];
    await page.route('**/api/patch-requests/*/apply', (route) => {
      heldRoutes.push(route);
    });
    await applyButton().click();
    await expect.poll(() => heldRoutes.length).toBe(1);

    expect(await progress.isVisible()).toBe(true);
    expect(await progress.textContent()).toBe(
      'Applying the ready files on GitHub. GitHub writes are sent at least 1 s apart, so this ' +
        'takes a second or more per file.',
    );
    expect(await applyButton().isDisabled()).toBe(true);
    await screenshot(page, 'apply-form-progress');

    const applied = { mode: 'commit', commitSha: 'a'.repeat(40), files: [{ path: 'src/app.ts' }], alreadyApplied: true };
    await heldRoutes[0]!.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(applied) });
    await page.unroute('**/api/patch-requests/*/apply');
    await expect.poll(applyResult, { timeout: 30_000 }).toMatch(/HTTP 200/);
    expect(await page.locator('#apply-result p.notice').textContent()).toBe(
      'HTTP 200: Already applied 1 file as commit aaaaaaa.',
    );
    expect(await progress.isVisible()).toBe(false);
    await screenshot(page, 'apply-form-result-after-progress');
  });
});
