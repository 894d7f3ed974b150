// A preview whose file read GitHub rate-limits shows the wait on the run page's list and on the
// preview page as soon as the limit is stored, while the call that started before it runs.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { primaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import {
  answerWithFixes,
  checkBothFindings,
  installer,
  openSignedInPage,
  screenshot,
  startDashboard,
  type Dashboard,
} from './harness.ts';

const contentsPath = '/repos/:owner/:repo/contents/*path';
/** Delay of the fake Groq's replies in ms, so the page is read while src/app.ts's call runs. */
const callMs = 15_000;

let dashboard: Dashboard;
let page: Page;
/** When the rate limit on the read of scripts/tool.py lifts, as an ISO 8601 time. */
let until: string;

function completions(): number {
  return dashboard.groq.requests.filter((request) => request.path.endsWith('/chat/completions')).length;
}

beforeAll(async () => {
  dashboard = await startDashboard({ PREVIEW_FILE_CONCURRENCY: '2', GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: '3600' });
  await dashboard.openPullRequest();
  await dashboard.database.sql`
    UPDATE users SET plan = 'pro', token_limit = 100000 WHERE github_id = ${installer.id}
  `;
  page = await openSignedInPage(dashboard);

  // The first read of scripts/tool.py waits until src/app.ts's call has started, and then
  // gets a rate limit that lifts in 10 minutes, longer than Octokit waits.
  const reset = Math.floor(Date.now() / 1000) + 600;
  until = new Date((reset + 1) * 1000).toISOString();
  const limited = primaryRateLimitError('GET', contentsPath, reset);
  let limitSent = false;
  const contents = defaultRoutes.find((route) => route.method === 'GET' && route.pattern === contentsPath)!;
  dashboard.github.addRoute({
    ...contents,
    async handle(routeContext) {
      if (routeContext.params.path !== 'scripts/tool.py' || limitSent) return contents.handle(routeContext);
      limitSent = true;
      await expect.poll(completions, { timeout: 20_000 }).toBe(1);
      return { status: limited.status, headers: limited.headers, body: limited.body };
    },
  });
  answerWithFixes(dashboard.groq, callMs);
});

afterAll(async () => {
  await dashboard?.close();
});

const runningText =
  '1 file that started before the limit is still running, and the other files continue by ' +
  'themselves after that time.';

describe('preview rate limit wait in Chromium', () => {
  it('lists the wait while the call runs', async () => {
    await checkBothFindings(page);
    await page.getByRole('button', { name: 'Preview fix' }).click();

    const notice = page.locator('#earlier-previews li .rate-limit-wait');
    await expect.poll(() => notice.count(), { timeout: 20_000 }).toBe(1);
    const text = await notice.textContent();
    expect(text).toContain('Previewing waits for a GitHub rate limit on this installation until');
    expect(text).toContain(runningText);
    expect(await notice.locator('time').getAttribute('datetime')).toBe(until);
    expect(await page.locator('#earlier-previews li .badge').first().textContent()).toBe('running');
    expect(completions()).toBe(1);
    expect(dashboard.groq.requests.at(-1)!.reply).toBeUndefined();
    await screenshot(page, 'preview-wait-run-list');
  });

  it('shows the wait on the preview page', async () => {
    await page.locator('#earlier-previews li a').first().click();
    await page.waitForURL(/\/patch-requests\/[0-9a-f-]{36}$/);
    const panel = page.locator('#patch-files');
    const notice = panel.locator('.rate-limit-wait');

    expect(await notice.textContent()).toContain(runningText);
    expect(await notice.locator('time').getAttribute('datetime')).toBe(until);
    expect(await panel.getAttribute('data-status')).toBe('running');
    expect(dashboard.groq.requests.at(-1)!.reply).toBeUndefined();
    await screenshot(page, 'preview-wait-calls-running');

    // Once the call has ended, the panel's polling shows the wait without the running file.
    await expect.poll(() => notice.textContent(), { timeout: callMs + 20_000 }).toContain(
      'then continues by itself.',
    );
    expect(await notice.textContent()).not.toContain('still running');
    expect(await notice.locator('time').getAttribute('datetime')).toBe(until);
    expect(await panel.getAttribute('data-status')).toBe('running');
    const appFile = panel.locator('section.patch-file[data-path="src/app.ts"]');
    const toolFile = panel.locator('section.patch-file[data-path="scripts/tool.py"]');
    await expect.poll(() => appFile.locator('.badge').first().textContent()).toBe('ready');
    expect(await toolFile.locator('.badge').first().textContent()).toBe('pending');
    expect(completions()).toBe(1);
    await screenshot(page, 'preview-wait-job-queued');
  });
});
