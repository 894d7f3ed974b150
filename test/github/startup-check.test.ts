// The start-up check of GITHUB_API_URL and the app's key: one GET /app whose outcome is logged,
// with a warning that names the setting or the key when it fails.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { generateAppKeyPair } from '../../src/demo/fakes/github.ts';
import { createGitHubApp } from '../../src/github/app.ts';
import { checkGitHubAtStart } from '../../src/github/startup-check.ts';
import { createLogger } from '../../src/logger.ts';
import { appId, captureLogs, startHarness, type Harness } from './harness.ts';

let harness: Harness;

beforeEach(async () => {
  harness = await startHarness({ base: { 'README.md': '# Widgets\n' }, head: {} });
});

afterEach(async () => {
  await harness?.close();
});

/** Runs the check against `baseUrl` with `privateKey` and returns its lines other than requests. */
async function checkLines(baseUrl: string, privateKey: string) {
  const { logs, destination } = captureLogs();
  const logger = createLogger('info', destination);
  const app = createGitHubApp({ appId, privateKey, baseUrl, logger });
  await checkGitHubAtStart(app, baseUrl, logger);
  return logs.lines.filter((line) => line.event !== 'github.request');
}

describe('checkGitHubAtStart', () => {
  it('logs an accepted token', async () => {
    const lines = await checkLines(harness.fake.url, harness.privateKeyPem);

    expect(lines).toHaveLength(1);
    expect(lines[0]!.event).toBe('github.checked');
    expect(lines[0]!.level).toBe(30);
    expect(lines[0]!.msg).toBe(`GITHUB_API_URL ${harness.fake.url} accepted the app's JSON web token`);
  });

  it('warns of a refused connection', async () => {
    const port = await findFreePort();
    const apiUrl = `http://127.0.0.1:${port}`;

    const lines = await checkLines(apiUrl, harness.privateKeyPem);

    expect(lines).toHaveLength(1);
    expect(lines[0]!.event).toBe('github.unreachable');
    expect(lines[0]!.level).toBe(40);
    expect(lines[0]!.msg).toBe(
      `GITHUB_API_URL ${apiUrl} sent no response to GET /app at start: connect ECONNREFUSED ` +
        `127.0.0.1:${port}: the connection to GITHUB_API_URL ${apiUrl} was refused. Check that ` +
        "GITHUB_API_URL is the URL of GitHub's REST API, such as https://api.github.com, and " +
        'that this host can reach it. Analyses retry GitHub requests for a few minutes and then fail.',
    );
  });

  it('warns of a key of another app', async () => {
    const lines = await checkLines(harness.fake.url, generateAppKeyPair().privateKeyPem);

    expect(lines).toHaveLength(1);
    expect(lines[0]!.event).toBe('github.app_rejected');
    expect(lines[0]!.level).toBe(40);
    expect(lines[0]!.msg).toMatch(/^GitHub returned 401 for GET \/app at start: A JSON web token could not be decoded\. /);
    expect(lines[0]!.msg).toContain('Check that APP_ID and PRIVATE_KEY_PATH belong to the same GitHub App');
  });
});
