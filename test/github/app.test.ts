import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGitHubApp } from '../../src/github/app.ts';
import { redactCredentials } from '../../src/errors/redact-credentials.ts';
import { RequestError } from '@octokit/request-error';
import { readFileAtRef } from '../../src/github/file-content.ts';
import { GitHubResponseTooLargeError, maxGitHubResponseBytes } from '../../src/github/responses.ts';
import { asGitHubRejection, describeFailedRequest } from '../../src/apply/github-rejection.ts';
import { toSafeError } from '../../src/errors/safe-error.ts';
import { isServerError, mayHaveWritten } from '../../src/github/request-errors.ts';
import { isAppCredentialRejection } from '../../src/github/token-request.ts';
import { findFreePort } from '../../src/db/bundled.ts';
import { asGitHubRateLimit } from '../../src/github/rate-limit.ts';
import type { Octokit } from '@octokit/rest';
import { examplePayload } from '../helpers/webhooks.ts';
import { createLogger } from '../../src/logger.ts';
import {
  defaultPermissions,
  generateAppKeyPair,
  primaryRateLimitError,
  secondaryRateLimitError,
  startFakeGitHub,
} from '../../src/demo/fakes/github.ts';
import {
  appId,
  captureLogs,
  owner,
  repo,
  requestsTo,
  startHarness,
  type Harness,
} from './harness.ts';

const contentsPattern = '/repos/:owner/:repo/contents/*path';
const tokenPath = /^\/app\/installations\/\d+\/access_tokens$/;

let harness: Harness;

function readme() {
  return readFileAtRef(harness.octokit, { owner, repo, path: 'README.md', ref: 'main' });
}

function contentRequests() {
  return requestsTo(harness.fake, 'GET', /\/contents\/README\.md$/);
}

function warnings() {
  return harness.logs.lines.filter((line) => line.level === 40);
}

beforeEach(async () => {
  harness = await startHarness({ base: { 'README.md': '# Widgets\n' }, head: {} });
});

afterEach(async () => {
  await harness?.close();
});

describe('installation authentication', () => {
  it('mints a token with the app JWT', async () => {
    const file = await readme();
    expect(file?.text).toBe('# Widgets\n');

    const tokenRequests = requestsTo(harness.fake, 'POST', tokenPath);
    expect(tokenRequests).toHaveLength(1);
    expect(tokenRequests[0]?.path).toBe(
      `/app/installations/${harness.installationId}/access_tokens`,
    );
    expect(tokenRequests[0]?.headers.authorization).toMatch(/^bearer eyJ/i);
  });

  it('sends the issued token to the API', async () => {
    await readme();
    const [issued] = harness.fake.issuedTokens;
    expect(issued?.installationId).toBe(harness.installationId);
    expect(issued?.token).toMatch(/^ghs_/);
    expect(contentRequests()[0]?.headers.authorization).toBe(`token ${issued?.token}`);
  });

  it('sends the fixwright user agent', async () => {
    await readme();
    expect(contentRequests()[0]?.headers['user-agent']).toMatch(/^fixwright /);
  });

  it('reuses the token across requests', async () => {
    await readme();
    await readme();
    const again = await harness.app.installationOctokit(harness.installationId);
    await readFileAtRef(again, { owner, repo, path: 'README.md', ref: 'main' });

    expect(again).toBe(harness.octokit);
    expect(requestsTo(harness.fake, 'POST', tokenPath)).toHaveLength(1);
    expect(contentRequests()).toHaveLength(3);
  });

  it('keeps one Octokit per installation', async () => {
    const otherId = harness.installationId + 10_000;
    harness.fake.setInstallation({ id: otherId, account: { login: owner } });
    const other = await harness.app.installationOctokit(otherId);
    await readme();
    await readFileAtRef(other, { owner, repo, path: 'README.md', ref: 'main' });

    expect(other).not.toBe(harness.octokit);
    const installationIds = harness.fake.issuedTokens.map((issued) => issued.installationId);
    expect(installationIds).toEqual([harness.installationId, otherId]);
  });

  it('rejects an invalid installation id', async () => {
    await expect(harness.app.installationOctokit(0)).rejects.toThrow(/Invalid installation id 0/);
    await expect(harness.app.installationOctokit(1.5)).rejects.toThrow(/positive integer/);
  });

  it('fails when the fake does not accept the app key', async () => {
    const otherKeys = generateAppKeyPair();
    const fake = await startFakeGitHub({ appId, publicKeyPem: otherKeys.publicKeyPem });
    try {
      fake.setInstallation({ id: 1, account: { login: owner } });
      const app = createGitHubApp({
        appId,
        privateKey: generateAppKeyPair().privateKeyPem,
        baseUrl: fake.url,
        logger: createLogger('silent'),
      });
      const octokit = await app.installationOctokit(1);
      const error = await readFileAtRef(octokit, { owner, repo, path: 'x', ref: 'main' }).catch(
        (caught: unknown) => caught,
      );
      expect((error as { status?: number }).status).toBe(401);
      expect((error as Error).message).toContain('A JSON web token could not be decoded');
      expect(isAppCredentialRejection(error)).toBe(true);
      expect(fake.issuedTokens).toHaveLength(0);
      expect(fake.requests.map((request) => request.path)).toEqual([
        '/app/installations/1/access_tokens',
      ]);
    } finally {
      await fake.close();
    }
  });

  it('reads app endpoints with the JWT', async () => {
    const app = harness.app.appOctokit();
    const { data } = await app.rest.apps.getInstallation({
      installation_id: harness.installationId,
    });
    expect(data.id).toBe(harness.installationId);
    expect(data.account).toMatchObject({ login: owner });
    expect(harness.app.appOctokit()).toBe(app);
    const request = requestsTo(harness.fake, 'GET', /^\/app\/installations\/\d+$/)[0];
    expect(request?.headers.authorization).toMatch(/^bearer eyJ/i);
    expect(harness.fake.issuedTokens).toHaveLength(0);
  });

  it('reports a suspended installation like GitHub', async () => {
    const suspendExample = examplePayload('installation', 'suspend', 1).installation;
    harness.fake.setInstallation({
      id: harness.installationId,
      account: { login: owner },
      suspended: true,
      suspendedBy: 'Codertocat',
    });
    const { data } = await harness.app.appOctokit().rest.apps.getInstallation({
      installation_id: harness.installationId,
    });

    expect(Object.keys(data).sort()).toEqual(Object.keys(suspendExample).sort());
    expect(data.suspended_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(data.suspended_by?.login).toBe('Codertocat');
    expect(Object.keys(data.suspended_by!).sort()).toEqual(
      Object.keys(suspendExample.suspended_by).sort(),
    );
  });

  it('reports an active installation like GitHub', async () => {
    const unsuspendExample = examplePayload('installation', 'unsuspend', 1).installation;
    const { data } = await harness.app.appOctokit().rest.apps.getInstallation({
      installation_id: harness.installationId,
    });

    expect(Object.keys(data).sort()).toEqual(Object.keys(unsuspendExample).sort());
    expect(data.suspended_at).toBeNull();
    expect(data.suspended_by).toBeNull();
  });

  it('returns 404 for a removed installation', async () => {
    harness.fake.removeInstallation(harness.installationId);
    const error = await harness.app
      .appOctokit()
      .rest.apps.getInstallation({ installation_id: harness.installationId })
      .catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(404);
  });
});

describe('installation permissions', () => {
  const withWorkflows = { ...defaultPermissions, workflows: 'write' } as const;

  /** Sets the permissions of the harness's installation in the fake. */
  function grant(permissions: Record<string, 'read' | 'write'>) {
    harness.fake.setInstallation({ id: harness.installationId, account: { login: owner }, permissions });
  }

  const tokenRequests = () => requestsTo(harness.fake, 'POST', tokenPath).length;

  it('reads the token permissions', async () => {
    grant(withWorkflows);

    const permissions = await harness.app.installationPermissions(harness.installationId, null);

    expect(permissions).toEqual(withWorkflows);
    const { data } = await harness.app.appOctokit().rest.apps.getInstallation({
      installation_id: harness.installationId,
    });
    expect(data.permissions).toEqual(permissions);
    expect(tokenRequests()).toBe(1);
  });

  it('reads them from the cached token', async () => {
    await readme();
    grant(withWorkflows);

    const permissions = await harness.app.installationPermissions(harness.installationId, null);

    expect(permissions).toEqual(defaultPermissions);
    expect(tokenRequests()).toBe(1);
  });

  it('renews the token once per change', async () => {
    await readme();
    grant(withWorkflows);
    const changedAt = new Date('2026-01-01T00:00:00Z');

    const renewed = await harness.app.installationPermissions(harness.installationId, changedAt);
    const again = await harness.app.installationPermissions(harness.installationId, changedAt);

    expect(renewed).toEqual(withWorkflows);
    expect(again).toEqual(withWorkflows);
    expect(tokenRequests()).toBe(2);
    await readme();
    const issued = harness.fake.issuedTokens.at(-1)!;
    expect(contentRequests().at(-1)?.headers.authorization).toBe(`token ${issued.token}`);
  });

  it('renews the token after a later change', async () => {
    const first = new Date('2026-01-01T00:00:00Z');
    await harness.app.installationPermissions(harness.installationId, first);
    grant({ ...defaultPermissions, workflows: 'read' });

    const permissions = await harness.app.installationPermissions(
      harness.installationId,
      new Date(first.getTime() + 1),
    );

    expect(permissions.workflows).toBe('read');
    expect(tokenRequests()).toBe(2);
  });
});

/** Makes the fake hold contents requests without a response until the returned function runs. */
function stallContents(): () => void {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  harness.fake.addRoute({
    method: 'GET',
    pattern: contentsPattern,
    auth: 'installation',
    handle: async () => {
      await released;
      return { status: 404, body: { message: 'Not Found' } };
    },
  });
  return release;
}

/** Creates an app whose idle limit, 0.3 s, is far below its total limit. */
function idleLimitedApp() {
  return createGitHubApp({
    appId,
    privateKey: harness.privateKeyPem,
    baseUrl: harness.fake.url,
    logger: createLogger('silent'),
    requestTimeoutMs: 300,
  });
}

/** Creates an app whose idle limit is far above its total limit of `totalTimeoutMs`. */
function totalLimitedApp(totalTimeoutMs: number) {
  return createGitHubApp({
    appId,
    privateKey: harness.privateKeyPem,
    baseUrl: harness.fake.url,
    logger: createLogger('silent'),
    requestTimeoutMs: 10_000,
    totalTimeoutMs,
  });
}

/** Requests README.md with `retries` retries, or the default, and returns the response or error. */
async function readmeRequest(octokit: Octokit, retries?: number) {
  return octokit
    .request('GET /repos/{owner}/{repo}/contents/{path}', {
      owner,
      repo,
      path: 'README.md',
      ...(retries === undefined ? {} : { request: { retries } }),
    })
    .then(
      (response) => response,
      (reason: unknown) => reason,
    );
}

describe('request time limit', () => {
  it('fails a request without response', async () => {
    const release = stallContents();
    const octokit = await idleLimitedApp().installationOctokit(harness.installationId);
    const started = Date.now();

    const error = await readmeRequest(octokit, 0);
    release();

    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(500);
    expect((error as RequestError).message).toBe(
      `GitHub request GET ${harness.fake.url}/repos/${owner}/${repo}/contents/README.md ` +
        'timed out after 0.3 s; check that GITHUB_API_URL is reachable from this host.',
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('unreachable GITHUB_API_URL', () => {
  it('names GITHUB_API_URL for a refused connection', async () => {
    const port = await findFreePort();
    const { logs, destination } = captureLogs();
    const app = createGitHubApp({
      appId,
      privateKey: harness.privateKeyPem,
      baseUrl: `http://127.0.0.1:${port}`,
      logger: createLogger('info', destination),
    });

    const error = await app
      .appOctokit()
      .request('GET /app', { request: { retries: 0 } })
      .catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(500);
    expect((error as RequestError).message).toBe(
      `connect ECONNREFUSED 127.0.0.1:${port}: the connection to GITHUB_API_URL ` +
        `http://127.0.0.1:${port} was refused. Check that GITHUB_API_URL is the URL of GitHub's ` +
        'REST API, such as https://api.github.com, and that this host can reach it.',
    );
    expect(asGitHubRejection(error)?.noResponse).toBe(true);
    const errors = logs.lines.filter((line) => line.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(
      new RegExp(
        `^GET /app - no response after \\d+ms: the connection to GITHUB_API_URL ` +
          `http://127\\.0\\.0\\.1:${port} was refused$`,
      ),
    );
    expect(errors[0]!.noResponse).toBe(true);
    expect(errors[0]!.event).toBe('github.request');
  });

  it('logs a GitHub 500 with its status', async () => {
    harness.fake.queueResponse({ method: 'GET', path: contentsPattern, status: 500 });

    const error = await readmeRequest(harness.octokit, 0);

    expect((error as RequestError).status).toBe(500);
    const errors = harness.logs.lines.filter((line) => line.level === 50);
    expect(errors.map((line) => line.msg)).toEqual([
      expect.stringMatching(new RegExp(`^GET /repos/${owner}/${repo}/contents/README\\.md - 500 with id `)),
    ]);
    expect(errors[0]!.noResponse).toBeUndefined();
  });

  it('retries a failed token request once', async () => {
    const { logs, destination } = captureLogs();
    const app = createGitHubApp({
      appId,
      privateKey: harness.privateKeyPem,
      baseUrl: harness.fake.url,
      logger: createLogger('info', destination),
    });
    for (let attempt = 0; attempt < 4; attempt += 1) {
      harness.fake.queueResponse({ method: 'POST', path: tokenPath, status: 502 });
    }
    const octokit = await app.installationOctokit(harness.installationId);

    const error = await readmeRequest(octokit);

    expect((error as RequestError).status).toBe(502);
    // The retry plugin sends the token request 4 times, 1, 4 and 9 s apart, and the request
    // that needed the token is not sent again for another 4 rounds.
    expect(requestsTo(harness.fake, 'POST', tokenPath)).toHaveLength(4);
    expect(contentRequests()).toHaveLength(0);
    expect(logs.lines.filter((line) => line.level === 50)).toHaveLength(5);
  }, 30_000);
});

describe('total request time limit', () => {
  const contentsPath = `/repos/${owner}/${repo}/contents/README.md`;

  /** Queues a contents response whose body arrives one byte every 20 ms. */
  function queueTrickle(body: unknown = { message: 'x'.repeat(200) }) {
    harness.fake.queueResponse({ method: 'GET', path: contentsPattern, status: 200, body, trickleMs: 20 });
  }

  it('fails a body that trickles', async () => {
    queueTrickle();
    const octokit = await totalLimitedApp(400).installationOctokit(harness.installationId);
    const started = Date.now();

    const error = await readmeRequest(octokit, 0);
    const elapsedMs = Date.now() - started;

    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(500);
    expect((error as RequestError).message).toBe(
      `GitHub request GET ${harness.fake.url}${contentsPath} timed out after the 0.4 s limit of ` +
        'GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS, because its response did not complete in time. ' +
        'Check that GITHUB_API_URL is reachable at a normal speed from this host, or raise ' +
        'GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS.',
    );
    // The body of over 200 bytes would take more than 4 s, and the idle limit is 10 s.
    expect(elapsedMs).toBeGreaterThanOrEqual(400);
    expect(elapsedMs).toBeLessThan(3_000);
  });

  it('reads a slow body within the limit', async () => {
    queueTrickle({ id: 1 });
    const octokit = await totalLimitedApp(5_000).installationOctokit(harness.installationId);

    const response = await readmeRequest(octokit, 0);

    expect((response as { data?: unknown }).data).toEqual({ id: 1 });
  });

  it('retries a trickle like a stall', async () => {
    queueTrickle();
    const octokit = await totalLimitedApp(400).installationOctokit(harness.installationId);

    const file = await readFileAtRef(octokit, { owner, repo, path: 'README.md', ref: 'main' });

    expect(file?.text).toBe('# Widgets\n');
    const [first, second] = contentRequests();
    expect(contentRequests()).toHaveLength(2);
    // The retry plugin waits 1 s before its first retry of a server error.
    expect(second!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(1_400);
  });

  it('classifies a trickle as a stall', async () => {
    const release = stallContents();
    const stallOctokit = await idleLimitedApp().installationOctokit(harness.installationId);
    const stalled = await readmeRequest(stallOctokit, 0);
    release();
    queueTrickle();
    const trickleOctokit = await totalLimitedApp(400).installationOctokit(harness.installationId);
    const trickled = await readmeRequest(trickleOctokit, 0);

    for (const [name, error] of [
      ['stall', stalled],
      ['trickle', trickled],
    ] as const) {
      const rejection = asGitHubRejection(error);
      expect(rejection, name).toEqual({
        status: 500,
        message: (error as Error).message,
        method: 'GET',
        path: contentsPath,
        noResponse: true,
      });
      expect(isServerError(error), name).toBe(true);
      expect(mayHaveWritten(error), name).toBe(true);
      expect(asGitHubRateLimit(error), name).toBeNull();
      expect(toSafeError(error).request, name).toBe(`GET ${contentsPath}`);
      expect(describeFailedRequest(error), name).toBe(
        `GitHub did not respond to GET ${contentsPath}: ${(error as Error).message}`,
      );
    }
  });
});

/**
 * Starts a server on 127.0.0.1 that responds to every request at once with status 200 and the
 * headers of a JSON body. It then writes `chunks` of that body `delayMs` apart, and ends the
 * body unless `stall` is set.
 */
async function startDripServer(chunks: string[], delayMs: number, options: { stall?: boolean } = {}) {
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
    response.flushHeaders();
    const write = (index: number) => {
      if (index === chunks.length) {
        if (!options.stall) response.end();
        return;
      }
      response.write(chunks[index]);
      const timer = setTimeout(() => write(index + 1), delayMs);
      timers.add(timer);
    };
    write(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('request time limit on bodies', () => {
  const body = JSON.stringify({ id: 1, slug: 'fixwright', name: 'Fixwright', owner: { login: 'octo' } });
  const chunks = [body.slice(0, 10), body.slice(10, 20), body.slice(20, 30), body.slice(30)];

  function appOctokit(baseUrl: string) {
    return createGitHubApp({
      appId,
      privateKey: harness.privateKeyPem,
      baseUrl,
      logger: createLogger('silent'),
      requestTimeoutMs: 300,
    }).appOctokit();
  }

  it('reads a body that outlasts the limit', async () => {
    // Each chunk arrives within the limit, but the whole body takes 4 x 200 ms.
    const server = await startDripServer(chunks, 200);
    try {
      const response = await appOctokit(server.url).request('GET /app', { request: { retries: 0 } });
      expect(response.data).toEqual(JSON.parse(body));
      expect(response.url).toBe(`${server.url}/app`);
    } finally {
      await server.close();
    }
  });

  it('rejects a streamed body over the limit', async () => {
    // The drip server sends no Content-Length, so the limit applies to the bytes read.
    const server = await startDripServer(chunks, 10);
    try {
      const octokit = createGitHubApp({
        appId,
        privateKey: harness.privateKeyPem,
        baseUrl: server.url,
        logger: createLogger('silent'),
        maxResponseBytes: 25,
      }).appOctokit();

      const error = await octokit.request('GET /app').then(
        () => null,
        (reason: unknown) => reason,
      );

      expect(error).toBeInstanceOf(GitHubResponseTooLargeError);
      expect((error as Error).message).toBe(
        "GitHub's response to GET /app is larger than the limit of 25 bytes that Fixwright reads.",
      );
    } finally {
      await server.close();
    }
  });

  it('fails a body that stalls', async () => {
    const server = await startDripServer(chunks.slice(0, 2), 50, { stall: true });
    try {
      const error = await appOctokit(server.url)
        .request('GET /app', { request: { retries: 0 } })
        .then(
          (response) => response,
          (reason: unknown) => reason,
        );
      expect(error).toBeInstanceOf(RequestError);
      expect((error as RequestError).status).toBe(500);
      expect((error as RequestError).message).toBe(
        `GitHub request GET ${server.url}/app timed out after 0.3 s; check that GITHUB_API_URL ` +
          'is reachable from this host.',
      );
    } finally {
      await server.close();
    }
  });
});

describe('response bodies', () => {
  const pullPattern = '/repos/:owner/:repo/pulls/:number';
  const pullPath = `/repos/${owner}/${repo}/pulls/7`;

  function answerPull(body: Record<string, unknown>) {
    harness.fake.addRoute({
      method: 'GET',
      pattern: pullPattern,
      auth: 'installation',
      handle: () => ({ status: 200, body }),
    });
  }

  async function pullError(octokit: Octokit) {
    return octokit.rest.pulls.get({ owner, repo, pull_number: 7 }).then(
      () => null,
      (reason: unknown) => reason,
    );
  }

  it('parses a 30 MB pull request', async () => {
    // Octokit's own parser returned a JSON string this long as the response text.
    answerPull({ number: 7, title: 'Large description', body: 'x'.repeat(30_000_000) });

    const { data } = await harness.octokit.rest.pulls.get({ owner, repo, pull_number: 7 });

    expect(typeof data).toBe('object');
    expect(data.number).toBe(7);
    expect(data.body).toHaveLength(30_000_000);
  });

  it('rejects a body over the limit once', async () => {
    answerPull({ number: 7, body: 'x'.repeat(2000) });
    const app = createGitHubApp({
      appId,
      privateKey: harness.privateKeyPem,
      baseUrl: harness.fake.url,
      logger: createLogger('silent'),
      maxResponseBytes: 1024,
    });

    const error = await pullError(await app.installationOctokit(harness.installationId));

    expect(error).toBeInstanceOf(GitHubResponseTooLargeError);
    expect((error as Error).message).toBe(
      `GitHub's response to GET ${pullPath} is larger than the limit of 1024 bytes that ` +
        'Fixwright reads.',
    );
    expect(asGitHubRejection(error)).toEqual({
      status: 200,
      message: 'the response is larger than the limit of 1024 bytes',
      method: 'GET',
      path: pullPath,
      invalidResponse: true,
    });
    // The retry plugin does not send it again, because the response would be as large.
    expect(requestsTo(harness.fake, 'GET', /\/pulls\/7$/)).toHaveLength(1);
  });

  it('rejects a declared length over the default', async () => {
    // The body never comes, so only its Content-Length can end the request before the timeout.
    const server = http.createServer((_request, response) => {
      response.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': String(maxGitHubResponseBytes + 1),
      });
      response.write('{"id": 1, "slug": "');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const app = createGitHubApp({
        appId,
        privateKey: harness.privateKeyPem,
        baseUrl: url,
        logger: createLogger('silent'),
        requestTimeoutMs: 10_000,
      });
      const started = Date.now();

      const error = await app.appOctokit().request('GET /app').then(
        () => null,
        (reason: unknown) => reason,
      );

      expect(error).toBeInstanceOf(GitHubResponseTooLargeError);
      expect((error as Error).message).toBe(
        "GitHub's response to GET /app is larger than the limit of 67108864 bytes (64 MiB) " +
          'that Fixwright reads.',
      );
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('oversized error responses', () => {
  const contentsPath = `/repos/${owner}/${repo}/contents/README.md`;
  const padding = 'x'.repeat(2000);

  function limitedApp(maxResponseBytes?: number, baseUrl = harness.fake.url) {
    return createGitHubApp({
      appId,
      privateKey: harness.privateKeyPem,
      baseUrl,
      logger: createLogger('silent'),
      requestTimeoutMs: 10_000,
      ...(maxResponseBytes === undefined ? {} : { maxResponseBytes }),
    });
  }

  async function readmeError(app: ReturnType<typeof createGitHubApp>) {
    const octokit = await app.installationOctokit(harness.installationId);
    return readFileAtRef(octokit, { owner, repo, path: 'README.md', ref: 'main' }).then(
      () => null,
      (reason: unknown) => reason,
    );
  }

  function oversizedMessage(status: number, limit: string, path = contentsPath) {
    return (
      `GitHub's response to GET ${path} (HTTP ${status}) has a body larger than the limit of ` +
      `${limit} that Fixwright reads, so only its status and headers are used.`
    );
  }

  it('reads a 429 wait from headers', async () => {
    harness.fake.queueResponse({
      method: 'GET',
      path: contentsPattern,
      status: 429,
      headers: { 'retry-after': '120' },
      body: { message: 'You have exceeded a secondary rate limit.', padding },
    });

    const error = await readmeError(limitedApp(1024));
    const now = Date.now();

    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(429);
    expect((error as Error).message).toBe(oversizedMessage(429, '1024 bytes'));
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 120_000 });
    expect(contentRequests()).toHaveLength(1);
  });

  it('reads a 403 primary limit from headers', async () => {
    const resetEpochSeconds = Math.floor(Date.now() / 1000) + 600;
    const queued = primaryRateLimitError('GET', contentsPattern, resetEpochSeconds);
    harness.fake.queueResponse({ ...queued, body: { message: 'API rate limit exceeded.', padding } });

    const error = await readmeError(limitedApp(1024));

    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(403);
    expect((error as Error).message).toBe(oversizedMessage(403, '1024 bytes'));
    expect(asGitHubRateLimit(error)).toEqual({
      kind: 'primary',
      liftsAt: (resetEpochSeconds + 1) * 1000,
    });
    // The reset is more than a minute away, so the throttling plugin does not wait for it.
    expect(contentRequests()).toHaveLength(1);
  });

  it('sends no retry for a reset past 2038', async () => {
    // 9999999999 wraps to a time in 2014 through a 32-bit integer.
    const resetEpochSeconds = 9_999_999_999;
    harness.fake.queueResponse(primaryRateLimitError('GET', contentsPattern, resetEpochSeconds));
    harness.fake.queueResponse(primaryRateLimitError('GET', contentsPattern, resetEpochSeconds));
    harness.fake.queueResponse(primaryRateLimitError('GET', contentsPattern, resetEpochSeconds));

    const error = await readmeError(limitedApp());

    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(403);
    expect(asGitHubRateLimit(error)).toEqual({
      kind: 'primary',
      liftsAt: (resetEpochSeconds + 1) * 1000,
    });
    expect(contentRequests()).toHaveLength(1);
  });

  it('keeps the status of a 404', async () => {
    const notFound = {
      method: 'GET',
      path: contentsPattern,
      status: 404,
      body: { message: 'Not Found', padding },
    };
    harness.fake.queueResponse(notFound);
    harness.fake.queueResponse(notFound);
    const octokit = await limitedApp(1024).installationOctokit(harness.installationId);

    // readFileAtRef returns null for a file that a 404 reports missing.
    const file = await readFileAtRef(octokit, { owner, repo, path: 'README.md', ref: 'main' });
    const error = await octokit.request(`GET ${contentsPath}`).then(
      () => null,
      (reason: unknown) => reason,
    );

    expect(file).toBeNull();
    expect(error).toBeInstanceOf(RequestError);
    expect((error as RequestError).status).toBe(404);
    expect(asGitHubRateLimit(error)).toBeNull();
    expect(asGitHubRejection(error)).toEqual({
      status: 404,
      message: oversizedMessage(404, '1024 bytes'),
      method: 'GET',
      path: contentsPath,
    });
  });

  it('reads a streamed 429 over the limit', async () => {
    // Without Content-Length, the limit applies to the bytes read so far.
    const server = http.createServer((_request, response) => {
      response.writeHead(429, { 'content-type': 'application/json', 'retry-after': '30' });
      response.end(JSON.stringify({ message: 'Too many requests', padding }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const error = await limitedApp(1024, url).appOctokit().request('GET /app').then(
        () => null,
        (reason: unknown) => reason,
      );
      const now = Date.now();

      expect(error).toBeInstanceOf(RequestError);
      expect((error as Error).message).toBe(oversizedMessage(429, '1024 bytes', '/app'));
      expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 30_000 });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('ends a 429 declaring over 64 MiB', async () => {
    // The body never comes, so only its Content-Length can end the request before the timeout.
    const server = http.createServer((_request, response) => {
      response.writeHead(429, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': String(maxGitHubResponseBytes + 1),
        'retry-after': '90',
      });
      response.write('{"message": "');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const started = Date.now();

      const error = await limitedApp(undefined, url).appOctokit().request('GET /app').then(
        () => null,
        (reason: unknown) => reason,
      );
      const now = Date.now();

      expect(error).toBeInstanceOf(RequestError);
      expect((error as RequestError).status).toBe(429);
      expect((error as Error).message).toBe(
        oversizedMessage(429, '67108864 bytes (64 MiB)', '/app'),
      );
      expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 90_000 });
      expect(now - started).toBeLessThan(5_000);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('rate limits', () => {
  it('retries after a secondary rate limit', async () => {
    harness.fake.queueResponse(secondaryRateLimitError('GET', contentsPattern, 1));
    const file = await readme();

    expect(file?.text).toBe('# Widgets\n');
    expect(contentRequests()).toHaveLength(2);
    const [warning] = warnings();
    expect(warning?.installationId).toBe(harness.installationId);
    expect(warning?.rateLimit).toBe('secondary');
    expect(warning?.retryAfterSeconds).toBe(1);
    expect(warning?.msg).toBe('GitHub secondary rate limit hit, retrying after 1 s');
  });

  it('retries after a primary rate limit', async () => {
    const resetEpochSeconds = Math.floor(Date.now() / 1000) + 1;
    harness.fake.queueResponse(primaryRateLimitError('GET', contentsPattern, resetEpochSeconds));
    const file = await readme();

    expect(file?.text).toBe('# Widgets\n');
    expect(contentRequests()).toHaveLength(2);
    const [warning] = warnings();
    expect(warning?.rateLimit).toBe('primary');
    expect(warning?.installationId).toBe(harness.installationId);
  });

  it.each([
    [120, '2 minutes'],
    [7201, '3 hours'],
    [1e20, 'more than a day'],
  ])('gives up on a wait of %s s', async (retryAfterSeconds, delay) => {
    harness.fake.queueResponse(secondaryRateLimitError('GET', contentsPattern, retryAfterSeconds));
    const error = await readme().catch((caught: unknown) => caught);

    expect((error as { status?: number }).status).toBe(403);
    expect(contentRequests()).toHaveLength(1);
    const [warning] = warnings();
    expect(warning?.msg).toBe(
      `GitHub secondary rate limit hit, giving up (retry after ${delay}, 0 retries done)`,
    );
    expect(warning?.retryAfterSeconds).toBe(retryAfterSeconds);
  });

  it('retries a 429 after its retry-after', async () => {
    harness.fake.queueResponse(secondaryRateLimitError('GET', contentsPattern, 1, 429));
    const file = await readme();

    expect(file?.text).toBe('# Widgets\n');
    expect(contentRequests()).toHaveLength(2);
    const [warning] = warnings();
    expect(warning?.rateLimit).toBe('secondary');
    expect(warning?.retryAfterSeconds).toBe(1);
    expect(warning?.msg).toBe('GitHub secondary rate limit hit, retrying after 1 s');
  });

  it('sends a 429 over a minute once', async () => {
    harness.fake.queueResponse(secondaryRateLimitError('GET', contentsPattern, 120, 429));
    const started = Date.now();
    const error = await readme().catch((caught: unknown) => caught);

    expect((error as { status?: number }).status).toBe(429);
    expect(contentRequests()).toHaveLength(1);
    // With its defaults, plugin-retry would send it again 1 s later, long before 120 s.
    expect(Date.now() - started).toBeLessThan(1_000);
    const [warning] = warnings();
    expect(warning?.msg).toContain('giving up');
    expect(warning?.retryAfterSeconds).toBe(120);
  });

  it('gives up after two retries', async () => {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      harness.fake.queueResponse(secondaryRateLimitError('GET', contentsPattern, 1));
    }
    const error = await readme().catch((caught: unknown) => caught);

    expect((error as { status?: number }).status).toBe(403);
    expect(contentRequests()).toHaveLength(3);
    expect(warnings().map((warning) => warning.retryCount)).toEqual([0, 1, 2]);
    expect(warnings().at(-1)?.msg).toBe(
      'GitHub secondary rate limit hit, giving up (retry after 1 s, 2 retries done)',
    );
  });
});

describe('logging', () => {
  it('never writes tokens or JWTs', async () => {
    harness.fake.queueResponse(secondaryRateLimitError('GET', contentsPattern, 1));
    await readme();
    const tokenRequest = requestsTo(harness.fake, 'POST', tokenPath)[0];
    const jwt = tokenRequest?.headers.authorization?.split(' ')[1];
    const token = harness.fake.issuedTokens[0]?.token;
    const text = harness.logs.text();

    expect(jwt).toBeDefined();
    expect(token).toBeDefined();
    expect(harness.logs.lines.length).toBeGreaterThan(3);
    expect(text).not.toContain(jwt);
    expect(text).not.toContain(token);
  });

  it('routes Octokit levels to pino levels', async () => {
    await readme();
    const levels = new Set(harness.logs.lines.map((line) => line.level));
    expect(levels.has(20)).toBe(true);
    expect(levels.has(30)).toBe(true);
    const completed = harness.logs.lines.find((line) => line.level === 30);
    expect(completed?.msg).toMatch(/^POST \/app\/installations\/\d+\/access_tokens - 201/);
  });

  it('gives every line an event', async () => {
    harness.fake.queueResponse(secondaryRateLimitError('GET', contentsPattern, 1));
    await readme();
    const requests = harness.logs.lines.filter((line) => line.event === 'github.request');
    const rateLimits = harness.logs.lines.filter((line) => line.event === 'github.rate_limit');

    expect(harness.logs.lines.filter((line) => line.event === undefined)).toEqual([]);
    expect(requests.map((line) => line.msg)).toContainEqual(
      expect.stringMatching(/^GET \/repos\/[^ ]+\/contents\/README\.md\?ref=main - 200/),
    );
    expect(rateLimits).toHaveLength(1);
    expect(rateLimits[0]).toMatchObject({ level: 40, retrying: true, rateLimit: 'secondary', retryCount: 0 });
  });

  it('redacts credential patterns', () => {
    const { logs, destination } = captureLogs();
    createLogger('info', destination).info(
      redactCredentials('token ghs_abcdefghijklmnopqrstuvwxyz0123 and Bearer eyJa.eyJb.sig'),
    );
    expect(logs.lines[0]?.msg).toBe('token [redacted] and Bearer [redacted]');
    expect(redactCredentials('account for token replication delay')).toBe(
      'account for token replication delay',
    );
  });
});
