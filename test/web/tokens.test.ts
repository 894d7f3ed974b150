import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokens } from '../../src/db/schema/index.ts';
import {
  findTokenOwner,
  listApiTokens,
  maxLiveTokensPerUser,
} from '../../src/users/api-tokens.ts';
import { createApp, maxFormBodyBytes } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import {
  createSignedInUser,
  formBody,
  formHeaders,
  multipartBody,
  textFile,
  type SignedInUser,
} from '../helpers/web.ts';

let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;

beforeAll(async () => {
  context = await createTestContext();
  app = createApp(context);
  user = await createSignedInUser(context.db, { login: 'token-user' });
});
afterAll(async () => {
  await context?.close();
});

function post(path: string, fields: Record<string, string | string[]> = {}) {
  return app.request(path, {
    method: 'POST',
    headers: formHeaders(user),
    body: formBody({ _csrf: user.csrfToken, ...fields }),
  });
}

describe('personal access token pages', () => {
  let token: string;
  let tokenId: string;

  it('creates a token and shows it once', async () => {
    const response = await post('/tokens', { name: 'CI <script>' });
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const html = await response.text();
    token = /(fxw_[A-Za-z0-9_-]{43})/.exec(html)![1]!;
    expect(html).toContain('Token &quot;CI &lt;script&gt;&quot; created');

    const list = await (await app.request('/tokens', { headers: { cookie: user.cookie } })).text();
    expect(list).toContain('<span class="muted">never</span>');
    expect(list).not.toContain(token);
    expect(list).toContain(`fxw_…${token.slice(-4)}`);
    expect(list).toContain('CI &lt;script&gt;');
    tokenId = /action="\/tokens\/([0-9a-f-]{36})\/revoke"/.exec(list)![1]!;
  });

  it('creates a working token', async () => {
    expect(await findTokenOwner(context.db, token)).toMatchObject({ id: user.userId });
  });

  it('shows when a token was last used', async () => {
    const api = await app.request('/api/user/usage', { headers: { authorization: `Bearer ${token}` } });
    expect(api.status).toBe(200);
    const after = await (await app.request('/tokens', { headers: { cookie: user.cookie } })).text();
    expect(after).not.toContain('<span class="muted">never</span>');
  });

  it('rejects a blank name on the page', async () => {
    const before = await listApiTokens(context.db, user.userId);
    const response = await post('/tokens', { name: '   ' });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain('<h1>Personal access tokens</h1>');
    expect(html).toContain(
      '<p class="error" role="alert" id="token-name-error">Invalid token name: it is empty or ' +
        'only spaces. Type a name of 1 to 100 characters that says where the token is used, ' +
        'such as &quot;CI script&quot;, and press &quot;Create token&quot; again.</p>',
    );
    expect(html).toContain('value="   "');
    expect(html).toContain('aria-invalid="true"');
    expect(html).toContain('aria-describedby="token-name-error"');
    expect(await listApiTokens(context.db, user.userId)).toHaveLength(before.length);
    const rejected = context.logs.filter((line) => line.event === 'api_token.rejected').at(-1);
    expect(rejected?.userId).toBe(user.userId);
    expect(rejected?.status).toBe(400);
  });

  it('keeps a name over 100 characters', async () => {
    const name = 'n'.repeat(101);
    const response = await post('/tokens', { name });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<h1>Personal access tokens</h1>');
    expect(html).toContain(
      'Invalid token name: it has 101 characters. Shorten it to at most 100 characters and ' +
        'press &quot;Create token&quot; again.',
    );
    expect(html).toContain(`value="${name}"`);
  });

  it('counts an emoji as one character', async () => {
    const owner = await createSignedInUser(context.db, { login: 'token-emoji' });
    const send = (name: string) =>
      app.request('/tokens', {
        method: 'POST',
        headers: formHeaders(owner),
        body: formBody({ _csrf: owner.csrfToken, name }),
      });
    const name = '\u{1F600}'.repeat(100);
    expect(name.length).toBe(200);

    const accepted = await send(name);
    const rejected = await send(`${name}\u{1F600}`);

    expect(accepted.status).toBe(200);
    expect(await accepted.text()).toContain(`Token &quot;${name}&quot; created`);
    const stored = await listApiTokens(context.db, owner.userId);
    expect(stored.map((token) => token.name)).toEqual([name]);
    expect(rejected.status).toBe(400);
    expect(await rejected.text()).toContain(
      'Invalid token name: it has 101 characters. Shorten it to at most 100 characters and ' +
        'press &quot;Create token&quot; again.',
    );
  });

  it('lets the browser send every valid name', async () => {
    const html = await (await app.request('/tokens', { headers: { cookie: user.cookie } })).text();
    // HTML counts maxlength in UTF-16 code units, and 100 emoji take 200.
    expect(html).toMatch(/<input name="name" required="" maxlength="200"/);
  });

  it('marks invisible characters in a name', async () => {
    const response = await post('/tokens', { name: 'ci\u202e tok' });
    expect(response.status).toBe(200);
    const html = await response.text();
    const mark =
      '<span class="char-mark" title="U+202E RIGHT-TO-LEFT OVERRIDE, shown in place of the ' +
      'invisible character">U+202E</span>';
    expect(html).toContain(`Token &quot;ci${mark} tok&quot; created`);
    expect(html).not.toContain('\u202e');

    const list = await (await app.request('/tokens', { headers: { cookie: user.cookie } })).text();
    expect(list).toContain(`<td>ci${mark} tok</td>`);
    expect(list).not.toContain('\u202e');
  });

  it('rejects a name with a NUL character', async () => {
    const response = await post('/tokens', { name: 'laptop\u0000' });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<h1>Personal access tokens</h1>');
    expect(html).toContain(
      'Invalid token name: it must not contain NUL (U+0000) characters. Remove them and press ' +
        '&quot;Create token&quot; again.',
    );
  });

  it('rejects a name sent as a file', async () => {
    const before = await listApiTokens(context.db, user.userId);
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: { cookie: user.cookie },
      body: multipartBody({ _csrf: user.csrfToken, name: textFile('name.txt', 'laptop') }),
    });

    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain(
      '<p class="error" role="alert" id="token-name-error">Invalid field &quot;name&quot;: the ' +
        'form sent it as a file upload, but expected a text field; type the name into the form ' +
        'and press &quot;Create token&quot; again.</p>',
    );
    expect(html).toContain('aria-invalid="true"');
    expect(await listApiTokens(context.db, user.userId)).toHaveLength(before.length);
  });

  it('rejects a repeated name', async () => {
    const before = await listApiTokens(context.db, user.userId);

    const response = await post('/tokens', { name: ['laptop', 'desktop'] });

    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<h1>Personal access tokens</h1>');
    expect(html).toContain(
      '<p class="error" role="alert" id="token-name-error">Invalid field &quot;name&quot;: the ' +
        'form sent it 2 times, but expected it once; type the name into the form and press ' +
        '&quot;Create token&quot; again.</p>',
    );
    expect(await listApiTokens(context.db, user.userId)).toHaveLength(before.length);
  });

  it('revokes a token', async () => {
    const response = await post(`/tokens/${tokenId}/revoke`);
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/tokens');
    expect(await findTokenOwner(context.db, token)).toBeNull();
    const api = await app.request('/api/user/usage', { headers: { authorization: `Bearer ${token}` } });
    expect(api.status).toBe(401);
    const body = (await api.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('unauthorized');
    // A revoked token gets the same message as one that never existed.
    const unknown = await app.request('/api/user/usage', { headers: { authorization: 'Bearer fw_never_issued' } });
    expect(unknown.status).toBe(401);
    expect(((await unknown.json()) as typeof body).error.message).toBe(body.error.message);
    expect(body.error.message).toBe(
      'Unknown or revoked personal access token. A token created with "fixwright users token" ' +
        'works only when the command used the database of this service, with the same DATA_DIR ' +
        'or DATABASE_URL.',
    );
    const again = await post(`/tokens/${tokenId}/revoke`);
    expect(again.status).toBe(404);
  });

  it('never logs the token', () => {
    expect(JSON.stringify(context.logs)).not.toContain(token);
    expect(context.logs.some((line) => line.event === 'api_token.created')).toBe(true);
  });
});

describe('dashboard form body limit', () => {
  function oversizedForm(name: string): string {
    return formBody({ _csrf: user.csrfToken, name, padding: 'x'.repeat(maxFormBodyBytes) });
  }

  it('rejects a streamed form over 1 MB', async () => {
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user),
      body: oversizedForm('streamed'),
    });
    expect(response.status).toBe(413);
    expect(await response.text()).toContain('Form body is larger than the limit of 1048576 bytes');
  });

  it('rejects a declared Content-Length over 1 MB', async () => {
    const body = oversizedForm('declared');
    const response = await app.request('/tokens', {
      method: 'POST',
      headers: formHeaders(user, { 'content-length': String(Buffer.byteLength(body)) }),
      body,
    });
    expect(response.status).toBe(413);
  });

  it('creates no token from an oversized form', async () => {
    const names = (await listApiTokens(context.db, user.userId)).map((token) => token.name);
    expect(names).not.toContain('streamed');
    expect(names).not.toContain('declared');
  });
});

describe('token limit', () => {
  it('rejects a token past the limit', async () => {
    const crowded = await createSignedInUser(context.db, { login: 'token-crowd' });
    await context.db.insert(apiTokens).values(
      Array.from({ length: maxLiveTokensPerUser - 1 }, (_, index) => ({
        userId: crowded.userId,
        name: `t${index}`,
        tokenHash: `hash-${crowded.userId}-${index}`,
        lastFour: '0000',
      })),
    );
    // One revoked token does not count.
    await context.db.insert(apiTokens).values({
      userId: crowded.userId,
      name: 'old',
      tokenHash: `hash-${crowded.userId}-revoked`,
      lastFour: '0000',
      revokedAt: new Date(),
    });
    const send = (name: string) =>
      app.request('/tokens', {
        method: 'POST',
        headers: formHeaders(crowded),
        body: formBody({ _csrf: crowded.csrfToken, name }),
      });

    // Two at once: the row lock lets exactly one of them take the last place.
    const statuses = (await Promise.all([send('last-a'), send('last-b')])).map((r) => r.status);
    const rejected = await send('one too many');

    expect(statuses.sort()).toEqual([200, 409]);
    expect(rejected.status).toBe(409);
    const html = await rejected.text();
    expect(html).toContain('<h1>Personal access tokens</h1>');
    expect(html).toContain(
      'token-crowd already has 100 live personal access tokens, the maximum; revoke one on the ' +
        'tokens page of the dashboard, then create the new one.',
    );
    expect(html).toContain('value="one too many"');
    expect(html).not.toContain('aria-invalid');
    expect(await listApiTokens(context.db, crowded.userId)).toHaveLength(maxLiveTokensPerUser);
  });
});
