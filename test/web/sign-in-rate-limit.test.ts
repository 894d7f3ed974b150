// SIGN_IN_RATE_LIMIT over HTTP on 127.0.0.1, with the fake GitHub's OAuth flow: a full
// sign-in counts once, callbacks that consume no state count, and IPv6 clients are counted
// by their /64.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { addFakeOAuth, type FakeOAuth } from '../../src/demo/fakes/github-oauth.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { serveTestApp } from '../helpers/web.ts';

const clientId = 'Iv1.ratelimitclient';
const clientSecret = 'oauth-client-secret-for-rate-limit-tests';
const stateCookieName = 'fixwright_oauth_state';

let github: FakeGitHub;
let oauth: FakeOAuth;

beforeAll(async () => {
  github = await startFakeGitHub({ appId: '1', publicKeyPem: generateAppKeyPair().publicKeyPem });
  oauth = addFakeOAuth(github, { clientId, clientSecret });
  oauth.signInAs({ id: 7001, login: 'octo-limited' });
});

afterAll(async () => {
  await github?.close();
});

interface ServedApp {
  context: TestContext;
  url: string;
  /** Sends GET `path` to the app without following redirects. */
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  /** Returns the stored windows of the sign-in limit as `key: count`. */
  windows(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/** Serves the app on 127.0.0.1 with sign-in through the fake GitHub and `env` on top. */
async function serveApp(env: Record<string, string>): Promise<ServedApp> {
  const context = await createTestContext({
    GITHUB_CLIENT_ID: clientId,
    GITHUB_CLIENT_SECRET: clientSecret,
    GITHUB_URL: github.url,
    GITHUB_API_URL: github.url,
    ...env,
  });
  const server = await serveTestApp(context);
  return {
    context,
    url: server.url,
    get: (path, headers = {}) => fetch(`${server.url}${path}`, { redirect: 'manual', headers }),
    async windows() {
      const rows = await context.db.execute<{ key: string; count: number }>(
        sql`SELECT key, count FROM rate_limit_windows ORDER BY key`,
      );
      return Object.fromEntries(rows.map((row) => [row.key, row.count]));
    },
    async close() {
      await server.close();
      await context.close();
    },
  };
}

function stateCookieOf(response: Response): string {
  for (const raw of response.headers.getSetCookie()) {
    const [pair = ''] = raw.split(';');
    if (pair.startsWith(`${stateCookieName}=`)) return pair.slice(stateCookieName.length + 1);
  }
  throw new Error(`No ${stateCookieName} cookie in the response (status ${response.status}).`);
}

/**
 * Runs one browser sign-in: start, GitHub's authorize redirect, then the callback with the
 * state cookie. Returns the start's and the callback's responses and the callback path.
 */
async function signIn(app: ServedApp, headers: Record<string, string> = {}) {
  const start = await app.get('/auth/github', headers);
  expect(start.status).toBe(302);
  const stateCookie = stateCookieOf(start);
  const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
  const back = new URL(authorize.headers.get('location')!);
  const callbackPath = back.pathname + back.search;
  const callback = await app.get(callbackPath, {
    ...headers,
    cookie: `${stateCookieName}=${stateCookie}`,
  });
  return { start, callback, callbackPath, stateCookie };
}

/** Starts a sign-in as a proxy forwarding for `address` would, and returns the status. */
async function startFrom(app: ServedApp, address: string): Promise<number> {
  return (await app.get('/auth/github', { 'x-forwarded-for': address })).status;
}

describe('sign-in rate limit', () => {
  it('counts a full sign-in once', async () => {
    const app = await serveApp({ SIGN_IN_RATE_LIMIT: '3' });
    try {
      // If the start and the callback were counted separately, the second callback would be
      // the 4th request and get 429.
      for (let attempt = 1; attempt <= 3; attempt++) {
        const { callback } = await signIn(app);
        expect(callback.status, `sign-in ${attempt}`).toBe(303);
        expect(callback.headers.getSetCookie().some((cookie) => cookie.startsWith('fixwright_session=')))
          .toBe(true);
        expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': attempt });
      }
      const fourth = await app.get('/auth/github');
      expect(fourth.status).toBe(429);
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 4 });
    } finally {
      await app.close();
    }
  });

  it('counts a cancelled sign-in once', async () => {
    const app = await serveApp({ SIGN_IN_RATE_LIMIT: '3' });
    try {
      oauth.denyNext();
      const { callback, callbackPath, stateCookie } = await signIn(app);
      expect(callback.status).toBe(400);
      expect(await callback.text()).toContain('Sign-in was cancelled on GitHub');
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 1 });
      const [states] = await app.context.db.execute<{ count: number }>(
        sql`SELECT count(*)::integer AS count FROM oauth_states`,
      );
      expect(states!.count).toBe(0);

      // The same callback again consumes nothing, so it counts.
      const again = await app.get(callbackPath, { cookie: `${stateCookieName}=${stateCookie}` });
      expect(again.status).toBe(400);
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 2 });
    } finally {
      await app.close();
    }
  });

  it('counts callbacks that consume no state', async () => {
    const app = await serveApp({ SIGN_IN_RATE_LIMIT: '5' });
    try {
      const missing = await app.get('/auth/github/callback');
      expect(missing.status).toBe(400);
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 1 });

      const garbage = await app.get('/auth/github/callback?code=x&state=made-up-state', {
        cookie: `${stateCookieName}=made-up-state`,
      });
      expect(garbage.status).toBe(403);
      expect(await garbage.text()).toContain('unknown, used or expired');
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 2 });

      const otherBrowser = await app.get('/auth/github/callback?code=x&state=made-up-state', {
        cookie: `${stateCookieName}=another-state`,
      });
      expect(otherBrowser.status).toBe(403);
      expect(await otherBrowser.text()).toContain('Sign-in state does not match');
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 3 });

      const { callback, callbackPath, stateCookie } = await signIn(app);
      expect(callback.status).toBe(303);
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 4 });

      const replayed = await app.get(callbackPath, { cookie: `${stateCookieName}=${stateCookie}` });
      expect(replayed.status).toBe(403);
      expect(await replayed.text()).toContain('unknown, used or expired');
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 5 });

      const overLimit = await app.get('/auth/github/callback?code=x&state=made-up-state', {
        cookie: `${stateCookieName}=made-up-state`,
      });
      expect(overLimit.status).toBe(429);
      expect(Number(overLimit.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await overLimit.text()).toContain('Too many sign-in attempts from your address');
      expect((await app.get('/auth/github')).status).toBe(429);
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 7 });
    } finally {
      await app.close();
    }
  });

  it('ignores sign-ins embedded in other pages', async () => {
    const app = await serveApp({ SIGN_IN_RATE_LIMIT: '2' });
    try {
      // Browsers send these for <img>, <iframe>, fetch() and <script> requests, which another
      // site's page can make to these routes.
      for (const destination of ['image', 'iframe', 'empty', 'script']) {
        const start = await app.get('/auth/github', { 'sec-fetch-dest': destination });
        expect(start.status, destination).toBe(403);
        expect(await start.text(), destination).toContain('open it as a page');
        const callback = await app.get('/auth/github/callback?code=x&state=made-up-state', {
          'sec-fetch-dest': destination,
        });
        expect(callback.status, destination).toBe(403);
      }
      expect(await app.windows()).toEqual({});
      const [states] = await app.context.db.execute<{ count: number }>(
        sql`SELECT count(*)::integer AS count FROM oauth_states`,
      );
      expect(states!.count).toBe(0);

      const { callback } = await signIn(app, { 'sec-fetch-dest': 'document' });
      expect(callback.status).toBe(303);
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 1 });
    } finally {
      await app.close();
    }
  });

  it('lets a started sign-in finish past the limit', async () => {
    const app = await serveApp({ SIGN_IN_RATE_LIMIT: '2' });
    try {
      const start = await app.get('/auth/github');
      const stateCookie = stateCookieOf(start);
      const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
      const back = new URL(authorize.headers.get('location')!);
      // Two bad callbacks from the same address use up the rest of the window.
      for (let attempt = 0; attempt < 2; attempt++) {
        await app.get('/auth/github/callback?code=x&state=made-up-state');
      }
      expect((await app.get('/auth/github')).status).toBe(429);

      const callback = await app.get(back.pathname + back.search, {
        cookie: `${stateCookieName}=${stateCookie}`,
      });
      expect(callback.status).toBe(303);
      expect(await app.windows()).toEqual({ 'sign-in:127.0.0.1': 4 });
    } finally {
      await app.close();
    }
  });

  it('counts IPv6 clients by their /64', async () => {
    const app = await serveApp({ SIGN_IN_RATE_LIMIT: '2', TRUST_PROXY: 'true' });
    try {
      expect(await startFrom(app, '2001:db8:0:7::1')).toBe(302);
      expect(await startFrom(app, '2001:db8:0:7:ffff:ffff:ffff:ffff')).toBe(302);
      expect(await startFrom(app, '2001:db8:0:7:1234::abcd')).toBe(429);
      expect(await startFrom(app, '2001:db8:0:8::1')).toBe(302);
      expect(await app.windows()).toEqual({
        'sign-in:2001:db8:0:7::/64': 3,
        'sign-in:2001:db8:0:8::/64': 1,
      });
      const limited = app.context.logs.find((line) => line.event === 'sign_in.rate_limited');
      expect(limited?.address).toBe('2001:db8:0:7:1234::abcd');
      expect(limited?.limitKey).toBe('2001:db8:0:7::/64');
    } finally {
      await app.close();
    }
  });

  it('counts IPv4-mapped IPv6 as the IPv4 address', async () => {
    const app = await serveApp({ SIGN_IN_RATE_LIMIT: '2', TRUST_PROXY: 'true' });
    try {
      expect(await startFrom(app, '198.51.100.4')).toBe(302);
      expect(await startFrom(app, '::ffff:198.51.100.4')).toBe(302);
      expect(await startFrom(app, '::ffff:c633:6404')).toBe(429);
      expect(await startFrom(app, '198.51.100.5')).toBe(302);
      expect(await app.windows()).toEqual({
        'sign-in:198.51.100.4': 3,
        'sign-in:198.51.100.5': 1,
      });
    } finally {
      await app.close();
    }
  });
});
