import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokens, patchRequests, sessions } from '../../src/db/schema/index.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { testPlatformKeys, createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import {
  createRunWithFindings,
  createSignedInUser,
  formBody,
  formHeaders,
  type SignedInUser,
} from '../helpers/web.ts';

let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;

beforeAll(async () => {
  context = await createTestContext(testPlatformKeys);
  app = createApp(context);
  user = await createSignedInUser(context.db, { login: 'csrf-user' });
});
afterAll(async () => {
  await context?.close();
});

async function tokenCount() {
  return (await context.db.select().from(apiTokens).where(eq(apiTokens.userId, user.userId))).length;
}

describe('CSRF protection', () => {
  it('puts the token in forms, meta tag and hx-headers', async () => {
    const html = await (await app.request('/tokens', { headers: { cookie: user.cookie } })).text();
    expect(html).toContain(`<meta name="csrf-token" content="${user.csrfToken}"`);
    expect(html).toContain(`name="_csrf" value="${user.csrfToken}"`);
    expect(html).toContain('hx-headers="{&quot;X-CSRF-Token&quot;:&quot;' + user.csrfToken);
  });

  it('rejects a form post without the token', async () => {
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ name: 'no token' }),
    });
    expect(response.status).toBe(403);
    expect(await response.text()).toContain('Invalid or missing CSRF token');
    expect(await tokenCount()).toBe(0);
    expect(context.logs.some((line) => line.event === 'csrf.rejected')).toBe(true);
  });

  it('rejects a form post with a wrong token', async () => {
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ name: 'wrong token', _csrf: 'x'.repeat(user.csrfToken.length) }),
    });
    expect(response.status).toBe(403);
    expect(await tokenCount()).toBe(0);
  });

  it("rejects another session's token", async () => {
    const other = await createSignedInUser(context.db, { login: 'csrf-other' });
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ name: 'borrowed token', _csrf: other.csrfToken }),
    });
    expect(response.status).toBe(403);
  });

  it('accepts the hidden field', async () => {
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ name: 'with token', _csrf: user.csrfToken }),
    });
    expect(response.status).toBe(200);
    expect(await tokenCount()).toBe(1);
  });

  it('accepts the htmx header', async () => {
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user, { 'hx-request': 'true', 'x-csrf-token': user.csrfToken }),
      body: formBody({ name: 'from htmx' }),
    });
    expect(response.status).toBe(200);
  });

  it('returns an htmx request with an HTML fragment', async () => {
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user, { 'hx-request': 'true' }),
      body: formBody({ name: 'fragment' }),
    });
    expect(response.status).toBe(403);
    const html = await response.text();
    expect(html).toMatch(/^<div class="error" role="alert">/);
    expect(html).toContain('request id');
  });
});

describe('malformed form bodies', () => {
  const brokenBodies = [
    { type: 'multipart/form-data; boundary=form-boundary', body: 'not multipart' },
    { type: 'multipart/form-data', body: 'no boundary parameter' },
  ];

  it('rejects broken bodies with 400', async () => {
    const before = await tokenCount();
    for (const { type, body } of brokenBodies) {
      const csrfHeaders: Record<string, string>[] = [{}, { 'x-csrf-token': user.csrfToken }];
      for (const csrfHeader of csrfHeaders) {
        const response = await app.request('/tokens', {
          method: 'POST',
          headers: { cookie: user.cookie, 'content-type': type, ...csrfHeader },
          body,
        });
        const label = `${type} ${Object.keys(csrfHeader).join()}`;
        expect(response.status, label).toBe(400);
        expect(await response.text(), label).toContain('Invalid form body');
      }
    }
    expect(await tokenCount()).toBe(before);
    expect(logsOf(context, 'http.unhandled_error')).toEqual([]);
  });

  it('rejects a broken keys form', async () => {
    const response = await app.request('/keys', {
      method: 'POST',
      headers: {
        cookie: user.cookie,
        'content-type': brokenBodies[0]!.type,
        'x-csrf-token': user.csrfToken,
      },
      body: brokenBodies[0]!.body,
    });
    expect(response.status).toBe(400);
  });
});

describe('JSON API with the session cookie', () => {
  it('reads without a CSRF token', async () => {
    const response = await app.request('/api/user/usage', { headers: { cookie: user.cookie } });
    expect(response.status).toBe(200);
    expect((await response.json()).plan).toBe('free');
  });

  it('rejects a cookie POST without X-CSRF-Token', async () => {
    const { run, findings } = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [{ path: 'src/a.ts', line: 2 }],
    });
    const post = (headers: Record<string, string>) =>
      app.request(`/api/runs/${run.id}/patch-requests`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ findingIds: [findings[0]!.id] }),
      });

    const rejected = await post({ cookie: user.cookie });
    expect(rejected.status).toBe(403);
    expect((await rejected.json()).error.message).toContain('X-CSRF-Token');
    expect(await context.db.select().from(patchRequests).where(eq(patchRequests.runId, run.id))).toHaveLength(0);

    const accepted = await post({ cookie: user.cookie, 'x-csrf-token': user.csrfToken });
    expect(accepted.status).toBe(202);

    // The same findings again get the preview that the cookie request queued.
    const { token } = await mintApiToken(context.db, user.userId, 'api');
    const bearer = await post({ authorization: `Bearer ${token}` });
    expect(bearer.status).toBe(200);
    expect((await bearer.json()).id).toBe((await accepted.json()).id);
  });

  it('sends an expired session to sign in again', async () => {
    const expired = await createSignedInUser(context.db, { login: 'csrf-expired' });
    await context.db
      .update(sessions)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(sessions.userId, expired.userId));
    const path = '/api/patch-requests/00000000-0000-4000-8000-000000000000/apply';
    const headers = { cookie: expired.cookie, 'x-csrf-token': expired.csrfToken };

    const plain = await app.request(path, { method: 'POST', headers });
    expect(plain.status).toBe(401);
    const { error } = await plain.json();
    expect(error.code).toBe('unauthorized');
    expect(error.message).toContain('session has expired');
    expect(error.message).toContain('sign in again');
    expect(error.message).not.toContain('Missing personal access token');
    expect(plain.headers.get('hx-redirect')).toBeNull();

    // The preview page's Apply button posts to the API through htmx.
    const fromPage = await app.request(path, {
      method: 'POST',
      headers: {
        ...headers,
        'hx-request': 'true',
        'hx-current-url': 'http://localhost/patch-requests/00000000-0000-4000-8000-000000000000',
      },
    });
    expect(fromPage.status).toBe(401);
    expect(fromPage.headers.get('hx-redirect')).toBe(
      '/sign-in?next=' + encodeURIComponent('/patch-requests/00000000-0000-4000-8000-000000000000'),
    );
  });

  it('returns 401 JSON without any credential', async () => {
    const response = await app.request('/api/runs');
    expect(response.status).toBe(401);
    expect((await response.json()).error.code).toBe('unauthorized');
  });
});
