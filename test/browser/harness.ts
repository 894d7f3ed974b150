import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { addFakeOAuth, type FakeOAuth } from '../../src/demo/fakes/github-oauth.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { offlineBaseUrls } from '../helpers/offline-urls.ts';
import { createGitRepository, type GitRepository } from '../../src/demo/git-repository.ts';
import { waitFor } from '../helpers/process.ts';

/**
 * Starts everything a browser test needs on 127.0.0.1: a test database, the fake GitHub API
 * with OAuth and one pull request, fake Groq, the service as `npm start` runs it, and
 * Debian's Chromium driven by playwright-core.
 */

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];

export const screenshotDir = path.resolve('test-results/screenshots');

const webhookSecret = 'browser-webhook-secret';
const appId = '42424';
const installationId = 9100;
const clientId = 'Iv1.browserclient';
const clientSecret = 'browser-oauth-client-secret';

export const installationExample = () =>
  structuredClone(
    examples.find((entry) => entry.name === 'installation')!.examples.find((payload) => payload.action === 'created')!,
  );
const pullRequestExample = () =>
  structuredClone(
    examples.find((entry) => entry.name === 'pull_request')!.examples.find((payload) => payload.action === 'opened')!,
  );

/** The GitHub account that installs the app in the examples, and so owns the runs. */
export const installer = { id: 21031067, login: 'Codertocat', name: 'Codertocat' };

const baseApp = `export function handler(id: string) {
  return load(id);
}
`;
const headApp = `export function handler(id: string) {
  const user = load(id);
  console.log('loaded', user);
  return user;
}
`;
const fixedApp = `export function handler(id: string) {
  const user = load(id);
  logger.debug({ id }, 'loaded user');
  return user;
}
`;
const baseTool = `def run(values):
    return sum(values)
`;
const headTool = `def run(values):
    total = sum(values)
    print("total", total)
    return total
`;
const fixedTool = `def run(values):
    total = sum(values)
    return total
`;
const proposals: Record<string, string> = { 'src/app.ts': fixedApp, 'scripts/tool.py': fixedTool };

/** Makes the fake Groq reply to each file's prompt with the file's fix, `delayMs` after the request. */
export function answerWithFixes(groq: FakeGroq, delayMs = 0): void {
  groq.setHandler((request) => {
    const user = request.messages.find((message) => message.role === 'user')!.content;
    const file = /<file[^>]* path="([^"]+)"/.exec(user)![1]!;
    return { text: proposals[file]!, delayMs };
  });
}

export interface Dashboard {
  url: string;
  database: TestDatabase;
  /** The fake GitHub API, to which a test can add routes. */
  github: FakeGitHub;
  oauth: FakeOAuth;
  groq: FakeGroq;
  browser: Browser;
  output(): string;
  /** Sends the installation and pull_request webhooks; returns when the run has completed. */
  openPullRequest(): Promise<void>;
  close(): Promise<void>;
}

export async function startDashboard(extraEnv: Record<string, string> = {}): Promise<Dashboard> {
  const database = await createTestDatabase();
  const repository: GitRepository = await createGitRepository({
    base: { 'src/app.ts': baseApp, 'scripts/tool.py': baseTool },
    head: { 'src/app.ts': headApp, 'scripts/tool.py': headTool },
  });
  const keys = generateAppKeyPair();
  const github: FakeGitHub = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  github.setInstallation({ id: installationId, account: { login: 'Codertocat', id: installer.id, type: 'User' } });
  github.addRepository({ owner: 'Codertocat', repo: 'Hello-World', id: 186853002, gitDir: repository.dir });
  github.addPullRequest({
    owner: 'Codertocat',
    repo: 'Hello-World',
    number: 2,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: 'feature',
    title: 'Update the README with new information.',
  });
  const oauth = addFakeOAuth(github, { clientId, clientSecret });
  oauth.signInAs(installer);

  const groq = await startFakeGroq();
  answerWithFixes(groq);

  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: String(port),
    ...offlineBaseUrls,
    PUBLIC_URL: url,
    DATABASE_URL: database.url,
    WEBHOOK_SECRET: webhookSecret,
    APP_ID: appId,
    PRIVATE_KEY: keys.privateKeyPem,
    GITHUB_URL: github.url,
    GITHUB_API_URL: github.url,
    GITHUB_CLIENT_ID: clientId,
    GITHUB_CLIENT_SECRET: clientSecret,
    GROQ_API_KEY: 'gsk_browser_platform_key',
    GROQ_BASE_URL: groq.url,
    ...extraEnv,
  };
  let output = '';
  const service: ChildProcess = spawn(process.execPath, ['bin/fixwright.js', 'start'], { env, stdio: 'pipe' });
  service.stdout!.on('data', (chunk) => (output += chunk));
  service.stderr!.on('data', (chunk) => (output += chunk));
  await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null))?.ok, {
    timeoutMs: 60_000,
    describe: () => `service at ${url} to respond to /healthz; output:\n${output}`,
  });

  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  await mkdir(screenshotDir, { recursive: true });

  async function postWebhook(event: string, payload: unknown, delivery: string) {
    const body = JSON.stringify(payload);
    const signature = 'sha256=' + createHmac('sha256', webhookSecret).update(body).digest('hex');
    const response = await fetch(`${url}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': event,
        'x-github-delivery': delivery,
        'x-hub-signature-256': signature,
      },
      body,
    });
    if (response.status !== 202) throw new Error(`webhook ${event} returned status ${response.status}`);
  }

  return {
    url,
    database,
    github,
    oauth,
    groq,
    browser,
    output: () => output,
    async openPullRequest() {
      const installation = installationExample();
      installation.installation.id = installationId;
      await postWebhook('installation', installation, 'browser-installation');
      const pullRequest = pullRequestExample();
      pullRequest.installation = { id: installationId };
      pullRequest.pull_request.head.sha = repository.headSha;
      pullRequest.pull_request.head.ref = 'feature';
      pullRequest.pull_request.base.sha = repository.baseSha;
      await postWebhook('pull_request', pullRequest, 'browser-opened');
      await waitFor(
        async () => {
          const rows = await database.sql`SELECT status FROM pr_runs`;
          return rows[0]?.status === 'completed';
        },
        { timeoutMs: 30_000, describe: () => `run to complete; output:\n${output}` },
      );
    },
    async close() {
      await browser.close().catch(() => {});
      if (service.exitCode === null) {
        const exited = new Promise((resolve) => service.once('exit', resolve));
        service.kill('SIGTERM');
        await exited;
      }
      await Promise.all([github.close(), groq.close()]);
      await repository.cleanup();
      await database.close();
    },
  };
}

/** Signs in through the sign-in page and the fake GitHub, and waits for the home page. */
export async function signIn(page: Page, dashboard: Dashboard): Promise<void> {
  await page.goto(`${dashboard.url}/`);
  await page.waitForURL(/\/sign-in/);
  await page.getByRole('link', { name: 'Sign in with GitHub' }).click();
  await page.waitForURL(`${dashboard.url}/`);
}

/** Opens a page of a new browser context, 1200 by 900 pixels, and signs in on it. */
export async function openSignedInPage(dashboard: Dashboard): Promise<Page> {
  const browserContext = await dashboard.browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await browserContext.newPage();
  page.setDefaultTimeout(20_000);
  await signIn(page, dashboard);
  return page;
}

/** Opens the run of the pull request from the home page and checks both of its findings. */
export async function checkBothFindings(page: Page): Promise<void> {
  await page.getByRole('link', { name: 'Codertocat/Hello-World#2' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
  const checkboxes = page.locator('input[name="findingIds"]');
  await expect.poll(() => checkboxes.count()).toBe(2);
  await checkboxes.nth(0).check();
  await checkboxes.nth(1).check();
}

export async function screenshot(page: Page, name: string): Promise<string> {
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
