import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminLogins, oauthStates, sessions, users } from '../../src/db/schema/index.ts';
import { resetAdminLogin } from '../../src/users/sync-admin-role.ts';
import { hashSecret } from '../../src/web/session/session-store.ts';
import { createApp } from '../../src/web/app.tsx';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { addFakeOAuth, type FakeOAuth } from '../../src/demo/fakes/github-oauth.ts';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import { createSignedInUser } from '../helpers/web.ts';

const clientId = 'Iv1.testclient';
const clientSecret = 'oauth-client-secret-for-tests';

let github: FakeGitHub;
let oauth: FakeOAuth;

beforeAll(async () => {
  github = await startFakeGitHub({ appId: '1', publicKeyPem: generateAppKeyPair().publicKeyPem });
  oauth = addFakeOAuth(github, { clientId, clientSecret });
});
afterAll(async () => {
  await github?.close();
});

/** Reads `name=value` pairs from every Set-Cookie header of a response. */
function cookiesOf(response: Response): Map<string, { value: string; raw: string }> {
  const cookies = new Map<string, { value: string; raw: string }>();
  for (const raw of response.headers.getSetCookie()) {
    const [pair = ''] = raw.split(';');
    const index = pair.indexOf('=');
    cookies.set(pair.slice(0, index), { value: pair.slice(index + 1), raw });
  }
  return cookies;
}

/** Runs the browser's part of the flow: start, follow GitHub's redirect, call back. */
async function signIn(app: ReturnType<typeof createApp>, next = '/') {
  const start = await app.request(`/auth/github?next=${encodeURIComponent(next)}`);
  const stateCookie = cookiesOf(start).get('fixwright_oauth_state')!.value;
  const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
  const callback = new URL(authorize.headers.get('location')!);
  const response = await app.request(callback.pathname + callback.search, {
    headers: { cookie: `fixwright_oauth_state=${stateCookie}` },
  });
  return { start, authorize, callback, response };
}

describe('sign-in with GitHub', () => {
  let context: TestContext;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    context = await createTestContext({
      GITHUB_CLIENT_ID: clientId,
      GITHUB_CLIENT_SECRET: clientSecret,
      GITHUB_URL: github.url,
      GITHUB_API_URL: github.url,
      PUBLIC_URL: 'http://127.0.0.1:3999',
    });
    app = createApp(context);
  });
  afterAll(async () => {
    await context?.close();
  });

  it('redirects pages to the sign-in page', async () => {
    const response = await app.request('/runs/00000000-0000-4000-8000-000000000000?x=1');
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(
      '/sign-in?next=' + encodeURIComponent('/runs/00000000-0000-4000-8000-000000000000?x=1'),
    );
  });

  it('sends htmx requests HX-Redirect', async () => {
    const response = await app.request('/usage/widget', { headers: { 'hx-request': 'true' } });
    expect(response.status).toBe(401);
    expect(response.headers.get('hx-redirect')).toBe('/sign-in');
  });

  it('returns htmx requests to the page', async () => {
    const polled = await app.request('/patch-requests/00000000-0000-4000-8000-000000000000/files', {
      headers: {
        'hx-request': 'true',
        'hx-current-url': 'http://127.0.0.1:3999/patch-requests/00000000-0000-4000-8000-000000000000?tab=1',
      },
    });
    expect(polled.status).toBe(401);
    expect(polled.headers.get('hx-redirect')).toBe(
      '/sign-in?next=' + encodeURIComponent('/patch-requests/00000000-0000-4000-8000-000000000000?tab=1'),
    );

    const posted = await app.request('/plans', {
      method: 'POST',
      headers: { 'hx-request': 'true', 'hx-current-url': 'http://127.0.0.1:3999/plans' },
    });
    expect(posted.status).toBe(401);
    expect(posted.headers.get('hx-redirect')).toBe('/sign-in?next=%2Fplans');
  });

  it('ignores an htmx page of another site', async () => {
    for (const current of ['//evil.example/x', 'not a url', 'http://127.0.0.1:3999/auth/github']) {
      const response = await app.request('/usage/widget', {
        headers: { 'hx-request': 'true', 'hx-current-url': current },
      });
      expect(response.headers.get('hx-redirect'), current).toBe('/sign-in');
    }
  });

  it('shows no notice for names of object properties', async () => {
    for (const notice of ['constructor', 'toString', '__proto__']) {
      const response = await app.request(`/sign-in?notice=${notice}`);
      expect(await response.text(), notice).not.toContain('class="notice"');
    }
  });

  it('shows the sign-in link', async () => {
    const response = await app.request('/sign-in?next=/tokens');
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('Sign in with GitHub');
    expect(html).toContain('href="/auth/github?next=%2Ftokens"');
  });

  it('redirects to GitHub with a stored state', async () => {
    const response = await app.request('/auth/github?next=/plans');
    expect(response.status).toBe(302);
    const location = new URL(response.headers.get('location')!);
    expect(location.origin + location.pathname).toBe(`${github.url}/login/oauth/authorize`);
    expect(location.searchParams.get('client_id')).toBe(clientId);
    expect(location.searchParams.get('redirect_uri')).toBe('http://127.0.0.1:3999/auth/github/callback');
    const state = location.searchParams.get('state')!;
    expect(state.length).toBeGreaterThanOrEqual(40);

    const cookie = cookiesOf(response).get('fixwright_oauth_state')!;
    expect(cookie.value).toBe(state);
    expect(cookie.raw).toMatch(/HttpOnly/i);
    expect(cookie.raw).toMatch(/SameSite=Lax/i);
    expect(cookie.raw).not.toMatch(/Secure/i);

    const [stored] = await context.db
      .select()
      .from(oauthStates)
      .where(eq(oauthStates.stateHash, hashSecret(state)));
    expect(stored!.returnTo).toBe('/plans');
  });

  it('signs in, creates the user and a session', async () => {
    oauth.signInAs({ id: 5001, login: 'octo-first', name: 'Octo First' });
    const { response } = await signIn(app, '/tokens');
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/tokens');

    const session = cookiesOf(response).get('fixwright_session')!;
    expect(session.raw).toMatch(/HttpOnly/i);
    expect(session.raw).toMatch(/SameSite=Lax/i);
    expect(session.raw).toMatch(/Path=\//);

    const [user] = await context.db.select().from(users).where(eq(users.githubId, 5001));
    expect(user!.login).toBe('octo-first');
    // No ADMIN_LOGINS and no admin yet: the first user to sign in becomes admin.
    expect(user!.role).toBe('admin');
    const [stored] = await context.db.select().from(sessions).where(eq(sessions.userId, user!.id));
    expect(stored!.tokenHash).toBe(hashSecret(session.value));
    expect(stored!.tokenHash).not.toBe(session.value);

    const home = await app.request('/', { headers: { cookie: `fixwright_session=${session.value}` } });
    expect(home.status).toBe(200);
    expect(await home.text()).toContain('octo-first');
  });

  it('stores a name with NUL without it', async () => {
    oauth.signInAs({ id: 5010, login: 'octo-nul', name: 'Octo\u0000 Nul' });
    const { response } = await signIn(app);
    expect(response.status).toBe(303);

    const [user] = await context.db.select().from(users).where(eq(users.githubId, 5010));
    expect(user!.login).toBe('octo-nul');
    expect(user!.name).toBe('Octo Nul');
  });

  it('makes the second user a plain user', async () => {
    oauth.signInAs({ id: 5002, login: 'octo-second' });
    const { response } = await signIn(app);
    expect(response.status).toBe(303);
    const [user] = await context.db.select().from(users).where(eq(users.githubId, 5002));
    expect(user!.role).toBe('user');
  });

  it('rejects a callback whose state cookie differs', async () => {
    oauth.signInAs({ id: 5003, login: 'octo-third' });
    const start = await app.request('/auth/github');
    const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
    const callback = new URL(authorize.headers.get('location')!);
    const response = await app.request(callback.pathname + callback.search, {
      headers: { cookie: 'fixwright_oauth_state=someone-elses-state' },
    });
    expect(response.status).toBe(403);
    expect(await response.text()).toContain('Sign-in state does not match');
    expect(await context.db.select().from(users).where(eq(users.githubId, 5003))).toHaveLength(0);
  });

  it('rejects a state used twice', async () => {
    oauth.signInAs({ id: 5004, login: 'octo-fourth' });
    const first = await signIn(app);
    expect(first.response.status).toBe(303);
    const stateCookie = first.callback.searchParams.get('state')!;
    const again = await app.request(first.callback.pathname + first.callback.search, {
      headers: { cookie: `fixwright_oauth_state=${stateCookie}` },
    });
    expect(again.status).toBe(403);
    expect(await again.text()).toContain('unknown, used or expired');
  });

  it('reports a cancelled sign-in', async () => {
    oauth.denyNext();
    const { response } = await signIn(app);
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('Sign-in was cancelled on GitHub');
  });

  it('names only an error code from GitHub', async () => {
    const known = await app.request('/auth/github/callback?error=redirect_uri_mismatch');
    expect(known.status).toBe(400);
    expect(await known.text()).toContain('GitHub returned the error &quot;redirect_uri_mismatch&quot;');

    const planted = 'Your account is locked. Call 555-0100 to unlock it';
    const text = await app.request(`/auth/github/callback?error=${encodeURIComponent(planted)}`);
    expect(text.status).toBe(400);
    const html = await text.text();
    expect(html).not.toContain('Call 555-0100');
    expect(html).toContain('GitHub returned an error; start again from the sign-in page.');
  });

  it('keeps the return path on this site', async () => {
    oauth.signInAs({ id: 5005, login: 'octo-fifth' });
    const { response } = await signIn(app, '//evil.example/steal');
    expect(response.headers.get('location')).toBe('/');
  });

  it('sends an over-long next home', async () => {
    const user = await createSignedInUser(context.db, { login: 'long-next' });
    const next = `/${'a'.repeat(1998)}😀`;
    const response = await app.request(`/sign-in?next=${encodeURIComponent(next)}`, {
      headers: { cookie: user.cookie },
    });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
  });

  it('keeps a return path of 2,000 characters', async () => {
    const user = await createSignedInUser(context.db, { login: 'long-enough-next' });
    const next = `/runs?page=${'b'.repeat(1989)}`;
    const response = await app.request(`/sign-in?next=${encodeURIComponent(next)}`, {
      headers: { cookie: user.cookie },
    });
    expect(response.headers.get('location')).toBe(next);
  });

  it('signs out with POST and deletes the session', async () => {
    oauth.signInAs({ id: 5006, login: 'octo-sixth' });
    const { response } = await signIn(app);
    const token = cookiesOf(response).get('fixwright_session')!.value;
    const cookie = `fixwright_session=${token}`;
    const [stored] = await context.db
      .select()
      .from(sessions)
      .where(eq(sessions.tokenHash, hashSecret(token)));

    const withoutToken = await app.request('/sign-out', { method: 'POST', headers: { cookie } });
    expect(withoutToken.status).toBe(403);

    const signOut = await app.request('/sign-out', {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${encodeURIComponent(stored!.csrfToken)}`,
    });
    expect(signOut.status).toBe(303);
    expect(signOut.headers.get('location')).toBe('/sign-in?notice=signed-out');
    expect(cookiesOf(signOut).get('fixwright_session')!.raw).toMatch(/Max-Age=0/i);
    expect(await context.db.select().from(sessions).where(eq(sessions.id, stored!.id))).toHaveLength(0);

    const after = await app.request('/', { headers: { cookie } });
    expect(after.status).toBe(303);
  });

  it('clears an expired session cookie on sign-out', async () => {
    const user = await createSignedInUser(context.db, { login: 'expired-sign-out' });
    const token = user.cookie.slice('fixwright_session='.length);
    await context.db
      .update(sessions)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(sessions.tokenHash, hashSecret(token)));

    const response = await app.request('/sign-out', {
      method: 'POST',
      headers: { cookie: user.cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: `_csrf=${encodeURIComponent(user.csrfToken)}`,
    });

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/sign-in?notice=signed-out');
    expect(cookiesOf(response).get('fixwright_session')?.raw).toMatch(/Max-Age=0/i);
    const left = await context.db.select().from(sessions).where(eq(sessions.tokenHash, hashSecret(token)));
    expect(left).toHaveLength(0);
  });

  it('clears an unknown session cookie on sign-out', async () => {
    const response = await app.request('/sign-out', {
      method: 'POST',
      headers: { cookie: 'fixwright_session=not-a-stored-token' },
    });

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/sign-in?notice=signed-out');
    expect(cookiesOf(response).get('fixwright_session')?.raw).toMatch(/Max-Age=0/i);
    const logged = context.logs.find((line) => line.event === 'auth.signed_out_without_session');
    expect(logged?.hadCookie).toBe(true);
  });

  it('deletes no cookie on a sign-out without one', async () => {
    // Another site's form can post here as a top-level navigation. The browser sends no
    // SameSite=Lax cookie with it, but would apply a Set-Cookie that deletes the session's.
    const response = await app.request('/sign-out', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
    });

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/sign-in?notice=signed-out');
    expect(response.headers.getSetCookie()).toEqual([]);
    const logged = logsOf(context, 'auth.signed_out_without_session');
    expect(logged.at(-1)?.hadCookie).toBe(false);
  });

  it('keeps tokens and secrets out of the log', () => {
    const text = JSON.stringify(context.logs);
    expect(text).toContain('auth.signed_in');
    expect(text).not.toContain(clientSecret);
    for (const token of oauth.issuedTokens) expect(text).not.toContain(token);
  });
});

/** Creates a test context whose sign-in goes to the fake GitHub, with `env` on top. */
function createSignInContext(env: Record<string, string> = {}) {
  return createTestContext({
    GITHUB_CLIENT_ID: clientId,
    GITHUB_CLIENT_SECRET: clientSecret,
    GITHUB_URL: github.url,
    GITHUB_API_URL: github.url,
    ...env,
  });
}

async function roleOf(context: TestContext, githubId: number) {
  const [row] = await context.db.select({ role: users.role }).from(users).where(eq(users.githubId, githubId));
  return row?.role;
}

describe('sign-in settings', () => {
  it('gives admin to ADMIN_LOGINS only', async () => {
    const context = await createTestContext({
      GITHUB_CLIENT_ID: clientId,
      GITHUB_CLIENT_SECRET: clientSecret,
      GITHUB_URL: github.url,
      GITHUB_API_URL: github.url,
      ADMIN_LOGINS: 'Boss-Login, other',
    });
    try {
      const app = createApp(context);
      oauth.signInAs({ id: 6001, login: 'first-but-not-admin' });
      await signIn(app);
      oauth.signInAs({ id: 6002, login: 'boss-login' });
      await signIn(app);
      const rows = await context.db.select({ login: users.login, role: users.role }).from(users);
      expect(Object.fromEntries(rows.map((row) => [row.login, row.role]))).toEqual({
        'first-but-not-admin': 'user',
        'boss-login': 'admin',
      });
    } finally {
      await context.close();
    }
  });

  it('records the GitHub id of ADMIN_LOGINS', async () => {
    const context = await createSignInContext({ ADMIN_LOGINS: 'boss' });
    try {
      const app = createApp(context);
      oauth.signInAs({ id: 6101, login: 'Boss' });
      await signIn(app);
      expect(await context.db.select().from(adminLogins)).toMatchObject([
        { login: 'boss', githubId: 6101 },
      ]);
      expect(await roleOf(context, 6101)).toBe('admin');

      // The admin renames the account, and another account takes the old login.
      oauth.signInAs({ id: 6101, login: 'boss-renamed' });
      await signIn(app);
      oauth.signInAs({ id: 6102, login: 'boss' });
      const { response } = await signIn(app);

      expect(response.status).toBe(303);
      expect(await roleOf(context, 6102)).toBe('user');
      expect(await roleOf(context, 6101)).toBe('user');
      expect(await context.db.select().from(adminLogins)).toMatchObject([
        { login: 'boss', githubId: 6101 },
      ]);
      const warning = context.logs.find((line) => line.event === 'auth.admin_login_reused');
      expect(warning).toMatchObject({ level: 40, login: 'boss', recordedGithubId: 6101, githubId: 6102 });
      const signedIn = logsOf(context, 'auth.signed_in').at(-1);
      expect(signedIn).toMatchObject({ githubId: 6102, role: 'user' });

      // The operator gives the login to its new account.
      expect(await resetAdminLogin(context.db, 'boss')).toBe(6101);
      await signIn(app);
      expect(await roleOf(context, 6102)).toBe('admin');
      expect(await context.db.select().from(adminLogins)).toMatchObject([
        { login: 'boss', githubId: 6102 },
      ]);
    } finally {
      await context.close();
    }
  });

  it('keeps ADMIN_LOGINS admin on later sign-ins', async () => {
    const context = await createSignInContext({ ADMIN_LOGINS: 'boss' });
    try {
      const app = createApp(context);
      for (const login of ['boss', 'BOSS']) {
        oauth.signInAs({ id: 6201, login });
        await signIn(app);
        const [user] = await context.db.select().from(users).where(eq(users.githubId, 6201));
        expect(user!.role, login).toBe('admin');
      }
      expect(context.logs.some((line) => line.event === 'auth.admin_login_reused')).toBe(false);
    } finally {
      await context.close();
    }
  });

  it('keeps the first admin by GitHub id', async () => {
    const context = await createSignInContext();
    try {
      const app = createApp(context);
      oauth.signInAs({ id: 6301, login: 'first' });
      await signIn(app);
      expect(await roleOf(context, 6301)).toBe('admin');

      // Another account takes the first admin's login after a rename.
      oauth.signInAs({ id: 6302, login: 'first' });
      await signIn(app);
      expect(await roleOf(context, 6302)).toBe('user');
      oauth.signInAs({ id: 6301, login: 'first-renamed' });
      await signIn(app);
      expect(await roleOf(context, 6301)).toBe('admin');

      // An admin row without a GitHub id, as a login match of an earlier version left it.
      await context.db.insert(users).values({ login: 'login-only', role: 'admin' });
      oauth.signInAs({ id: 6303, login: 'login-only' });
      await signIn(app);
      expect(await roleOf(context, 6303)).toBe('user');
    } finally {
      await context.close();
    }
  });

  it('sets Secure and __Host- when PUBLIC_URL is https', async () => {
    // The scheme and host are compared without case, as URLs define them.
    for (const publicUrl of ['https://fixwright.example.com', 'HTTPS://Fixwright.Example.com']) {
      const context = await createTestContext({
        GITHUB_CLIENT_ID: clientId,
        GITHUB_CLIENT_SECRET: clientSecret,
        GITHUB_URL: github.url,
        PUBLIC_URL: publicUrl,
      });
      try {
        const response = await createApp(context).request('/auth/github');
        const location = new URL(response.headers.get('location')!);
        expect(location.searchParams.get('redirect_uri'), publicUrl).toBe(
          'https://fixwright.example.com/auth/github/callback',
        );
        const cookie = cookiesOf(response).get('__Host-fixwright_oauth_state');
        expect(cookie?.raw, publicUrl).toMatch(/;\s*Secure/i);
      } finally {
        await context.close();
      }
    }
  });

  it('returns 429 past SIGN_IN_RATE_LIMIT', async () => {
    const context = await createTestContext({
      GITHUB_CLIENT_ID: clientId,
      GITHUB_CLIENT_SECRET: clientSecret,
      GITHUB_URL: github.url,
      SIGN_IN_RATE_LIMIT: '3',
    });
    try {
      const app = createApp(context);
      const statuses = [];
      for (let attempt = 0; attempt < 4; attempt++) {
        statuses.push((await app.request('/auth/github')).status);
      }
      expect(statuses).toEqual([302, 302, 302, 429]);
      const limited = await app.request('/auth/github');
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await limited.text()).toContain('Too many sign-in attempts from your address');
      expect(context.logs.some((line) => line.event === 'sign_in.rate_limited')).toBe(true);
    } finally {
      await context.close();
    }
  });

  it('explains missing OAuth settings', async () => {
    const context = await createTestContext({});
    try {
      const app = createApp(context);
      const page = await (await app.request('/sign-in')).text();
      expect(page).toContain('set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET');
      const start = await app.request('/auth/github');
      expect(start.status).toBe(503);
    } finally {
      await context.close();
    }
  });
});
