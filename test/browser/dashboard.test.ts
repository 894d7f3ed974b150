import type { Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBothFindings, installer, screenshot, signIn, startDashboard, type Dashboard } from './harness.ts';

let dashboard: Dashboard;
let page: Page;

beforeAll(async () => {
  dashboard = await startDashboard({ PLAN_SELF_SERVICE: 'true' });
  await dashboard.openPullRequest();
  const browserContext = await dashboard.browser.newContext({ viewport: { width: 1200, height: 900 } });
  page = await browserContext.newPage();
  page.setDefaultTimeout(20_000);
});

afterAll(async () => {
  await dashboard?.close();
});

/** Marks the loaded document, so a later check can tell that no navigation happened since. */
async function markDocument() {
  await page.evaluate(() => {
    (window as unknown as { fixwrightMarker: boolean }).fixwrightMarker = true;
  });
}

async function documentIsMarked(): Promise<boolean> {
  return page.evaluate(() => (window as unknown as { fixwrightMarker?: boolean }).fixwrightMarker === true);
}

async function setUsage(used: number) {
  await dashboard.database.sql`
    UPDATE users SET plan = 'free', token_limit = 1000, tokens_used = ${used}, tokens_reserved = 0
    WHERE github_id = ${installer.id}
  `;
}

describe('dashboard in Chromium', () => {
  it('signs in with GitHub', async () => {
    await page.goto(`${dashboard.url}/`);
    await page.waitForURL(/\/sign-in\?next=%2F$/);
    await screenshot(page, 'sign-in');
    await signIn(page, dashboard);
    await expect.poll(() => page.locator('.topbar .login').textContent()).toContain(installer.login);
    await expect.poll(() => page.locator('table.runs').textContent()).toContain('Codertocat/Hello-World#2');
    await screenshot(page, 'home');
  });

  it('previews a fix from a run and shows the diff', async () => {
    // The free plan's 1,000 tokens cannot pay for two files, so preview on Pro.
    await dashboard.database.sql`
      UPDATE users SET plan = 'pro', token_limit = 100000 WHERE github_id = ${installer.id}
    `;
    await checkBothFindings(page);
    await screenshot(page, 'run-selected');

    const runUrl = page.url();
    await markDocument();
    // The form's request is held back, so the test can check the button while it is in flight.
    const pendingRoutes: Route[] = [];
    await page.route('**/runs/*/patch-requests', (route) => {
      pendingRoutes.push(route);
    });
    const previewButton = page.getByRole('button', { name: 'Preview fix' });
    await previewButton.click();
    await expect.poll(() => pendingRoutes.length).toBe(1);
    expect(await previewButton.isDisabled()).toBe(true);
    await pendingRoutes[0]!.continue();
    await page.unroute('**/runs/*/patch-requests');
    await expect.poll(() => previewButton.isDisabled()).toBe(false);
    expect(pendingRoutes).toHaveLength(1);
    const openPreview = page.getByRole('link', { name: 'Open the preview' });
    await openPreview.waitFor({ state: 'visible', timeout: 30_000 });
    expect(page.url()).toBe(runUrl);
    // The progress fragments carry the "Earlier previews" list, so it lists the new preview.
    const listed = page.locator('#earlier-previews li');
    await expect.poll(() => listed.count()).toBe(1);
    await expect.poll(() => listed.locator('.badge').first().textContent()).toBe('ready');
    expect(await documentIsMarked()).toBe(true);
    expect(await page.locator('.patch-progress').textContent()).toContain('2 of 2 files done');
    await screenshot(page, 'run-preview-ready');

    await openPreview.click();
    await page.waitForURL(/\/patch-requests\/[0-9a-f-]{36}$/);
    const files = page.locator('section.patch-file');
    await expect.poll(() => files.count()).toBe(2);
    const appDiff = page.locator('section.patch-file[data-path="src/app.ts"] table.diff');
    await expect.poll(() => appDiff.locator('tr.diff-delete').first().textContent()).toContain(
      "console.log('loaded', user);",
    );
    const deleted = appDiff.locator('tr.diff-delete').first();
    expect(await deleted.locator('td.line-number').first().textContent()).toBe('3');
    const colour = await deleted.evaluate((row) => getComputedStyle(row).backgroundColor);
    expect(colour).toBe('rgb(255, 235, 233)');
    const added = appDiff.locator('tr.diff-add').first();
    expect(await added.textContent()).toContain("logger.debug({ id }, 'loaded user');");
    expect(await added.locator('td.line-number').nth(1).textContent()).toBe('3');
    expect(await added.evaluate((row) => getComputedStyle(row).backgroundColor)).toBe('rgb(218, 251, 225)');
    await screenshot(page, 'preview-diff');

  });

  it('regenerates one file without reloading', async () => {
    const completions = () =>
      dashboard.groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    const before = completions().length;
    // The new fix has a right-to-left override (U+202E) in a comment, which would display the
    // rest of the line reversed.
    dashboard.groq.setHandler(() => ({
      text: 'def run(values):\n    total = sum(values)  # \u202Enruter\n    return total\n',
    }));
    await markDocument();
    const toolFile = page.locator('section.patch-file[data-path="scripts/tool.py"]');
    await toolFile.getByRole('button', { name: 'Regenerate this file' }).click();
    // The panel shows the request running (no Regenerate buttons) until the job has finished.
    await expect.poll(() => completions().length, { timeout: 30_000 }).toBe(before + 1);
    await expect
      .poll(() => page.locator('#patch-files').getAttribute('data-status'), { timeout: 30_000 })
      .toBe('ready');
    await expect.poll(() => toolFile.locator('table.diff').count()).toBe(1);
    expect(await documentIsMarked()).toBe(true);
    const prompt = completions().at(-1)!.body as { messages: { role: string; content: string }[] };
    expect(prompt.messages.at(-1)!.content).toContain('path="scripts/tool.py"');
    const added = toolFile.locator('tr.diff-add', { hasText: 'total = sum(values)' });
    expect(await added.locator('td.code').textContent()).toBe('    total = sum(values)  # U+202Enruter');
    const mark = added.locator('.char-mark');
    expect(await mark.getAttribute('title')).toBe(
      'U+202E RIGHT-TO-LEFT OVERRIDE, shown in place of the invisible character',
    );
    expect(await mark.evaluate((element) => getComputedStyle(element).color)).toBe('rgb(207, 34, 46)');
    await screenshot(page, 'preview-after-regenerate');
  });

  it('keeps the files when a regeneration is rejected', async () => {
    // No tokens left, so the regeneration's call does not fit the allowance and gets 409.
    await setUsage(1000);
    await markDocument();
    const files = page.locator('section.patch-file');
    const toolFile = page.locator('section.patch-file[data-path="scripts/tool.py"]');
    await toolFile.getByRole('button', { name: 'Regenerate this file' }).click();

    const rejection = toolFile.locator('.regenerate-result [role="alert"]');
    await expect.poll(() => rejection.count()).toBe(1);
    expect(await rejection.textContent()).toContain('The file keeps its current result.');
    expect(await files.count()).toBe(2);
    expect(await page.locator('section.patch-file table.diff').count()).toBe(2);
    expect(await page.locator('#patch-files').getAttribute('data-status')).toBe('ready');
    expect(await page.getByRole('button', { name: 'Regenerate this file' }).count()).toBe(2);
    expect(await page.getByRole('button', { name: 'Apply' }).isDisabled()).toBe(false);
    expect(await documentIsMarked()).toBe(true);
    await screenshot(page, 'preview-regenerate-rejected');
    await dashboard.database.sql`
      UPDATE users SET plan = 'pro', token_limit = 100000, tokens_used = 0 WHERE github_id = ${installer.id}
    `;
  });

  it('applies the preview as one commit', async () => {
    await markDocument();
    const sent = page.waitForRequest((request) => request.method() === 'POST' && request.url().endsWith('/apply'));
    await page.getByRole('button', { name: 'Apply' }).click();
    // The form sends the version of the files on screen, which the regeneration's polls updated:
    // scripts/tool.py is at generation 1 now.
    const body = JSON.parse((await sent).postData() ?? '{}') as { previewVersion?: string };
    expect(body.previewVersion?.split(',')).toHaveLength(2);
    expect(body.previewVersion).toMatch(/:1:[0-9a-f]{16}/);
    const result = page.locator('#apply-result');
    // GitHub's writes are spaced a second apart by Octokit's throttling, so the commit takes a while.
    await expect.poll(() => result.textContent(), { timeout: 30_000 }).toMatch(/HTTP \d{3}/);
    const text = await result.textContent();
    expect(text, text ?? '').toMatch(/HTTP 200: Applied \d+ files? as commit [0-9a-f]{7}\./);
    expect(await result.textContent()).toMatch(/"commitSha": "[0-9a-f]{40}"/);
    expect(await documentIsMarked()).toBe(true);
    await screenshot(page, 'preview-apply-result');
  });

  it('summarizes the applied preview on the run page', async () => {
    await page.locator('.breadcrumbs a[href^="/runs/"]').click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    const item = page.locator('#earlier-previews li');
    await expect.poll(() => item.count()).toBe(1);
    expect(await item.locator('.badge.status-applied').textContent()).toBe('applied');
    expect(await item.locator('.preview-applied').textContent()).toMatch(/^as commit [0-9a-f]{7}$/);
    expect(await item.locator('.preview-files').textContent()).toBe(' · 2 files: 2 ready');
    expect(await item.locator('.preview-models').textContent()).toBe(' · Groq llama-3.3-70b-versatile');
    expect(await item.locator('.preview-tokens').textContent()).toMatch(/^ · [\d,]+ tokens on the platform key$/);
    await screenshot(page, 'run-earlier-previews');
  });

  it.each([
    [500, 'ok', false],
    [750, 'warn', false],
    [950, 'danger', true],
  ])('colours the widget at %d of 1000 tokens', async (used, level, warned) => {
    await setUsage(used);
    await page.goto(`${dashboard.url}/`);
    const bar = page.locator('#usage-widget svg.usage-bar');
    await expect.poll(() => bar.getAttribute('class')).toBe(`usage-bar level-${level}`);
    const colours: Record<string, string> = {
      ok: 'rgb(26, 127, 55)',
      warn: 'rgb(251, 133, 0)',
      danger: 'rgb(207, 34, 46)',
    };
    // Polled, because the widget's load trigger may swap the bar out between two reads.
    await expect
      .poll(() => bar.locator('rect.fill').evaluate((rect) => getComputedStyle(rect).fill))
      .toBe(colours[level]);
    expect(await page.locator('#usage-widget .warning').count()).toBe(warned ? 1 : 0);
    if (warned) {
      expect(await page.locator('#usage-widget .warning').textContent()).toContain('upgrade to Pro');
    }
    await screenshot(page, `widget-${used / 10}-percent`);
  });

  it('updates the widget at once after a plan switch', async () => {
    await setUsage(950);
    await page.goto(`${dashboard.url}/`);
    await expect.poll(() => page.locator('#usage-widget .usage').getAttribute('data-plan')).toBe('free');
    await markDocument();
    await page.locator('form.plan-switch select[name="plan"]').selectOption('pro');
    await page.getByRole('button', { name: 'Switch plan' }).click();
    await expect.poll(() => page.locator('#usage-widget .usage').getAttribute('data-plan')).toBe('pro');
    expect(await documentIsMarked()).toBe(true);
    expect(await page.locator('#usage-widget .badge.plan').textContent()).toBe('Pro');
    expect(await page.locator('#usage-widget .warning').count()).toBe(0);
    expect(await page.locator('#plan-message-self').textContent()).toContain('is now on Pro');
    await screenshot(page, 'widget-after-plan-switch');
  });

  it('updates the plans page after a plan switch', async () => {
    await setUsage(808);
    await dashboard.database.sql`
      INSERT INTO users (login, plan, token_limit, tokens_used) VALUES ('alice', 'pro', 100000, 0)
    `;
    await page.goto(`${dashboard.url}/plans`);
    await markDocument();
    const ownPlan = page.locator('main section.card').first();
    const ownRow = page.locator('table.users tbody tr', { hasText: installer.login });
    const aliceRow = page.locator('table.users tbody tr', { hasText: 'alice' });
    const cells = (row: typeof ownRow) => row.locator('td');
    expect(await ownPlan.locator('p').first().textContent()).toBe('Your plan: Free, 1,000 tokens per period');
    expect(await cells(ownRow).nth(2).textContent()).toBe('808 of 1,000');

    const ownForm = page.locator('form.plan-switch[action="/plans"]');
    await ownForm.locator('select[name="plan"]').selectOption('pro');
    await ownForm.getByRole('button', { name: 'Switch plan' }).click();
    await expect.poll(() => page.locator('#plan-message-self').textContent()).toBe(`${installer.login} is now on Pro.`);
    expect(await ownPlan.locator('p').first().textContent()).toBe('Your plan: Pro, 100,000 tokens per period');
    expect(await ownPlan.locator('tr.current td').first().textContent()).toBe('Pro');
    expect(await cells(ownRow).nth(1).textContent()).toBe('Pro');
    expect(await cells(ownRow).nth(2).textContent()).toBe('0 of 100,000');
    expect(await ownRow.locator('select[name="plan"]').inputValue()).toBe('pro');
    expect(await ownRow.locator('.plan-message').textContent()).toBe(`${installer.login} is now on Pro.`);

    await aliceRow.locator('select[name="plan"]').selectOption('enterprise');
    await aliceRow.getByRole('button', { name: 'Switch plan' }).click();
    await expect.poll(() => aliceRow.locator('.plan-message').textContent()).toBe('alice is now on Enterprise.');
    expect(await cells(aliceRow).nth(1).textContent()).toBe('Enterprise');
    expect(await cells(aliceRow).nth(2).textContent()).toBe('0 of unlimited');
    expect(await ownPlan.locator('p').first().textContent()).toBe('Your plan: Pro, 100,000 tokens per period');
    expect(await documentIsMarked()).toBe(true);
    await screenshot(page, 'plans-after-switch');

    // An admin's switch of their own row updates the own plan block too.
    await ownRow.locator('select[name="plan"]').selectOption('free');
    await ownRow.getByRole('button', { name: 'Switch plan' }).click();
    await expect.poll(() => ownRow.locator('.plan-message').textContent()).toBe(`${installer.login} is now on Free.`);
    expect(await ownPlan.locator('p').first().textContent()).toBe('Your plan: Free, 1,000 tokens per period');
    expect(await ownForm.locator('select[name="plan"]').inputValue()).toBe('free');
    expect(await page.locator('#plan-message-self').textContent()).toBe(`${installer.login} is now on Free.`);
    expect(await cells(ownRow).nth(1).textContent()).toBe('Free');
    expect(await documentIsMarked()).toBe(true);
  });

  it('returns to the page after the session expired', async () => {
    await page.goto(`${dashboard.url}/?from=widget`);
    await expect.poll(() => page.locator('#usage-widget .usage').count()).toBe(1);
    await dashboard.database.sql`DELETE FROM sessions`;
    // The widget reloads on this event, as after a plan switch, and gets 401 without a session.
    await page.evaluate(() => document.body.dispatchEvent(new Event('plan-changed')));
    await page.waitForURL(/\/sign-in/);
    expect(new URL(page.url()).searchParams.get('next')).toBe('/?from=widget');
    await page.getByRole('link', { name: 'Sign in with GitHub' }).click();
    await page.waitForURL(`${dashboard.url}/?from=widget`);
    expect(await page.locator('.topbar .login').textContent()).toContain(installer.login);
    expect(await page.locator('#usage-widget .usage').count()).toBe(1);
  });

  it('stays signed in when another site posts to sign-out', async () => {
    const otherSite = 'http://other-site.test/';
    await page.route(otherSite, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body:
          `<form method="post" action="${dashboard.url}/sign-out"></form>` +
          '<script>document.forms[0].submit()</script>',
      }),
    );
    await page.goto(otherSite);
    await page.waitForURL((url) => url.href.startsWith(dashboard.url));
    await page.unroute(otherSite);

    await page.goto(`${dashboard.url}/`);
    expect(page.url()).toBe(`${dashboard.url}/`);
    expect(await page.locator('.topbar .login').textContent()).toContain(installer.login);
  });

  it('keeps secrets out of the service output', () => {
    const output = dashboard.output();
    expect(output).toContain('auth.signed_in');
    expect(output).not.toContain('browser-oauth-client-secret');
    for (const token of dashboard.oauth.issuedTokens) expect(output).not.toContain(token);
  });
});
