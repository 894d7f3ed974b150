import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appBotLogin, appBotUserId } from '../../src/demo/fakes/github/app.ts';
import { webHostOfApi } from '../../src/github/app-identity.ts';
import { createGitHubApp, type GitHubApp } from '../../src/github/app.ts';
import { createLogger } from '../../src/logger.ts';
import { appId, captureLogs, requestsTo, startHarness, type Harness } from './harness.ts';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness({ base: { 'a.txt': 'a\n' }, head: { 'a.txt': 'b\n' } });
});

afterAll(async () => {
  await harness?.close();
});

/** Creates a GitHubApp with no bot user read yet, on the harness's fake. */
function createFreshApp(id: string): GitHubApp {
  const { destination } = captureLogs();
  return createGitHubApp({
    appId: id,
    privateKey: harness.privateKeyPem,
    baseUrl: harness.fake.url,
    logger: createLogger('debug', destination),
  });
}

describe('webHostOfApi', () => {
  it.each([
    ['https://api.github.com', 'github.com'],
    ['https://api.github.com/', 'github.com'],
    ['https://api.acme.ghe.com', 'acme.ghe.com'],
    ['https://ghe.example/api/v3', 'ghe.example'],
    ['https://api.corp.example/api/v3/', 'api.corp.example'],
    ['http://127.0.0.1:8080', '127.0.0.1'],
  ])('maps %s to %s', (apiUrl, host) => {
    expect(webHostOfApi(apiUrl)).toBe(host);
  });
});

describe('GitHubApp.botUser', () => {
  it('reads the bot user once', async () => {
    const appReadsBefore = requestsTo(harness.fake, 'GET', /^\/app$/).length;
    const first = await harness.app.botUser(harness.octokit);
    const second = await harness.app.botUser(harness.octokit);

    expect(first).toEqual({ id: appBotUserId, login: appBotLogin });
    expect(second).toEqual(first);
    expect(requestsTo(harness.fake, 'GET', /^\/app$/).length - appReadsBefore).toBe(1);
    expect(requestsTo(harness.fake, 'GET', /^\/users\/fixwright(\[|%5B)bot(\]|%5D)$/i)).toHaveLength(1);
  });

  it('rejects another app id', async () => {
    const other = createFreshApp('777');
    // A queued response skips the fake's JWT check, which would reject the token of app 777.
    harness.fake.queueResponse({
      method: 'GET',
      path: '/app',
      status: 200,
      body: { id: Number(appId), slug: 'fixwright', name: 'Fixwright' },
    });

    await expect(other.botUser(harness.octokit)).rejects.toThrow(
      'id: expected app 777, the APP_ID setting, received 12345',
    );
  });

  it('reads again after a failure', async () => {
    const app = createFreshApp(appId);
    harness.fake.queueResponse({ method: 'GET', path: '/app', status: 404 });

    await expect(app.botUser(harness.octokit)).rejects.toMatchObject({ status: 404 });
    await expect(app.botUser(harness.octokit)).resolves.toEqual({ id: appBotUserId, login: appBotLogin });
  });

  it('keeps a failure to its installation', async () => {
    const app = createFreshApp(appId);
    const suspendedId = 98_765;
    harness.fake.setInstallation({
      id: suspendedId,
      account: { login: 'gone', id: 99, type: 'User' },
      suspended: true,
    });
    const suspended = await app.installationOctokit(suspendedId);

    // The suspended installation reads first, and the healthy one reads while that read runs.
    const [fromSuspended, fromHealthy] = await Promise.allSettled([
      app.botUser(suspended),
      app.botUser(harness.octokit),
    ]);

    expect(fromSuspended.status).toBe('rejected');
    expect((fromSuspended as PromiseRejectedResult).reason).toMatchObject({ status: 403 });
    expect(fromHealthy).toEqual({ status: 'fulfilled', value: { id: appBotUserId, login: appBotLogin } });
    // The healthy installation's success is kept, so the suspended one no longer needs its token.
    await expect(app.botUser(suspended)).resolves.toEqual({ id: appBotUserId, login: appBotLogin });
  });

  it('names the committer address of the web host', () => {
    expect(harness.app.webHost).toBe('127.0.0.1');
    expect(harness.app.webCommitterEmail).toBe('noreply@127.0.0.1');
  });
});
