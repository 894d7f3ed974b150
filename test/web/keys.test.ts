import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createApp } from '../../src/web/app.tsx';
import { providerOrders, storedKeys } from '../fakes/user-keys.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import {
  createSignedInUser,
  formBody,
  formHeaders,
  multipartBody,
  textFile,
  type SignedInUser,
} from '../helpers/web.ts';

// The page is tested against an in-memory key service with the real module's signatures.
vi.mock('../../src/keys/user-keys.ts', () => import('../fakes/user-keys.ts'));

let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;

beforeAll(async () => {
  context = await createTestContext();
  app = createApp(context);
  user = await createSignedInUser(context.db, { login: 'key-user' });
});
afterAll(async () => {
  await context?.close();
});
beforeEach(() => storedKeys.clear());

function post(path: string, fields: Record<string, string | string[]> = {}) {
  return app.request(path, {
    method: 'POST',
    headers: formHeaders(user),
    body: formBody({ _csrf: user.csrfToken, ...fields }),
  });
}

const page = async (path = '/keys') =>
  (await app.request(path, { headers: { cookie: user.cookie } })).text();

describe('own key pages', () => {
  it('saves a key and lists its last four characters', async () => {
    const key = 'gsk_live_0123456789abcdefWXYZ';
    const response = await post('/keys', { provider: 'groq', key });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/keys?notice=saved');
    const html = await page('/keys?notice=saved');
    expect(html).toContain('Key saved.');
    expect(html).toContain('…WXYZ');
    expect(html).not.toContain(key);
    expect(JSON.stringify(context.logs)).not.toContain(key);
  });

  it('replaces a key of the same provider', async () => {
    await post('/keys', { provider: 'gemini', key: 'AIza-first-1111' });
    await post('/keys', { provider: 'gemini', key: 'AIza-second-2222' });
    const html = await page();
    expect(html).toContain('…2222');
    expect(html).not.toContain('…1111');
  });

  it('shows why a key was rejected', async () => {
    const response = await post('/keys', { provider: 'groq', key: 'bad-key' });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('The groq key was rejected');
  });

  it('answers 502 when the provider could not check the key', async () => {
    const response = await post('/keys', { provider: 'groq', key: 'down-key' });
    expect(response.status).toBe(502);
    expect(await response.text()).toContain('Could not check the key with groq.');
  });

  it('shows why a stored key is unusable', async () => {
    storedKeys.set(`${user.userId}:groq`, {
      provider: 'groq',
      lastFour: 'dead',
      createdAt: new Date(),
      updatedAt: new Date(),
      lastUsedAt: new Date(),
      unusableReason: 'Groq rejected the key <b>401</b>; save a new one.',
    });
    const html = await page();
    expect(html).toContain('Groq rejected the key &lt;b&gt;401&lt;/b&gt;; save a new one.');
  });

  it('rejects an unknown provider on the page', async () => {
    const response = await post('/keys', { provider: 'openai', key: 'sk-123' });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<h1>Your own model keys</h1>');
    expect(html).toContain(
      'Invalid provider &quot;openai&quot;: choose Groq or Gemini and press &quot;Save key&quot; again.',
    );
    expect(html).not.toContain('sk-123');
  });

  it('names a missing provider field', async () => {
    const cases: [string, Record<string, string>, string][] = [
      [
        '/keys',
        { key: 'sk-123' },
        'Missing field "provider": send provider=groq or provider=gemini, or choose Groq or ' +
          'Gemini and press "Save key" again.',
      ],
      [
        '/keys/order',
        {},
        'Missing field "first", the provider under "Try first": send first=groq or ' +
          'first=gemini, or choose Groq or Gemini and press "Save order" again.',
      ],
      [
        '/keys/order',
        { first: '' },
        'Missing field "first", the provider under "Try first": send first=groq or ' +
          'first=gemini, or choose Groq or Gemini and press "Save order" again.',
      ],
    ];
    for (const [path, fields, message] of cases) {
      const response = await post(path, fields);
      expect(response.status, path).toBe(400);
      const html = await response.text();
      expect(html, path).toContain('<h1>Your own model keys</h1>');
      expect(html, path).toContain(`<p class="error" role="alert">${message.replaceAll('"', '&quot;')}</p>`);
      expect(html, path).not.toContain('Invalid provider');
    }
  });

  it('rejects a blank key on the page', async () => {
    const response = await post('/keys', { provider: 'gemini', key: '    ' });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain('<h1>Your own model keys</h1>');
    expect(html).toContain(
      '<p class="error" role="alert">Invalid key: the field is empty or only spaces. Paste your ' +
        'Gemini API key and press &quot;Save key&quot; again.</p>',
    );
    expect(html).toContain('<option value="gemini" selected="">Gemini</option>');
    expect(storedKeys.size).toBe(0);
  });

  it('counts key length in characters', async () => {
    const emoji = await post('/keys', { provider: 'groq', key: '\u{1F600}'.repeat(501) });
    const text = await post('/keys', { provider: 'groq', key: 'k'.repeat(501) });

    for (const response of [emoji, text]) {
      expect(response.status).toBe(400);
      expect(await response.text()).toContain(
        '<p class="error" role="alert">Invalid key: it has 501 characters, more than the 500 this ' +
          'form accepts. Paste your Groq API key alone and press &quot;Save key&quot; again.</p>',
      );
    }
    expect(storedKeys.size).toBe(0);
  });

  it('keeps the provider of a rejected key', async () => {
    const response = await post('/keys', { provider: 'gemini', key: 'bad-gemini-key' });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<option value="gemini" selected="">Gemini</option>');
    expect(html).not.toContain('bad-gemini-key');
  });

  it('rejects file uploads and repeated fields', async () => {
    const cases: [string, Record<string, string | File | string[]>, string][] = [
      [
        '/keys',
        { provider: textFile('provider.txt', 'groq'), key: 'gsk_file_case' },
        'Invalid field "provider": the form sent it as a file upload, but expected a text ' +
          'field; choose Groq or Gemini and press "Save key" again.',
      ],
      [
        '/keys',
        { provider: ['groq', 'gemini'], key: 'gsk_file_case' },
        'Invalid field "provider": the form sent it 2 times, but expected it once; choose Groq ' +
          'or Gemini and press "Save key" again.',
      ],
      [
        '/keys',
        { provider: 'gemini', key: textFile('key.txt', 'gsk_file_case') },
        'Invalid field "key": the form sent it as a file upload, but expected a text field; ' +
          'paste your Gemini API key into the form and press "Save key" again.',
      ],
      [
        '/keys',
        { provider: 'gemini', key: ['gsk_file_case', 'gsk_file_case'] },
        'Invalid field "key": the form sent it 2 times, but expected it once; paste your Gemini ' +
          'API key into the form and press "Save key" again.',
      ],
      [
        '/keys/order',
        { first: textFile('first.txt', 'gemini') },
        'Invalid field "first": the form sent it as a file upload, but expected a text field; ' +
          'choose Groq or Gemini and press "Save order" again.',
      ],
      [
        '/keys/order',
        { first: ['gemini', 'groq'] },
        'Invalid field "first": the form sent it 2 times, but expected it once; choose Groq or ' +
          'Gemini and press "Save order" again.',
      ],
    ];
    const orderBefore = providerOrders.get(user.userId);
    for (const [path, fields, message] of cases) {
      const response = await app.request(path, {
        method: 'POST',
        headers: { cookie: user.cookie },
        body: multipartBody({ _csrf: user.csrfToken, ...fields }),
      });

      const label = `${path} ${message}`;
      expect(response.status, label).toBe(400);
      const html = await response.text();
      expect(html, label).toContain('<h1>Your own model keys</h1>');
      expect(html, label).toContain(`<p class="error" role="alert">${message.replaceAll('"', '&quot;')}</p>`);
      expect(html, label).not.toContain('gsk_file_case');
      expect(storedKeys.size, label).toBe(0);
      expect(providerOrders.get(user.userId), label).toEqual(orderBefore);
    }
  });

  it('keeps the provider of a key sent as a file', async () => {
    const response = await app.request('/keys', {
      method: 'POST',
      headers: { cookie: user.cookie },
      body: multipartBody({ _csrf: user.csrfToken, provider: 'gemini', key: textFile('key.txt', 'x') }),
    });

    expect(response.status).toBe(400);
    expect(await response.text()).toContain('<option value="gemini" selected="">Gemini</option>');
  });

  it('deletes a key', async () => {
    await post('/keys', { provider: 'groq', key: 'gsk_to_delete_9999' });
    const response = await post('/keys/groq/delete');
    expect(response.status).toBe(303);
    expect(storedKeys.size).toBe(0);
    expect(await page('/keys?notice=deleted')).toContain('Key deleted.');
  });

  it('notes a key that was already deleted', async () => {
    await post('/keys', { provider: 'gemini', key: 'AIza-delete-twice-1234' });
    const first = await post('/keys/gemini/delete');
    const second = await post('/keys/gemini/delete');

    expect(first.status).toBe(303);
    expect(second.status).toBe(303);
    expect(second.headers.get('location')).toBe('/keys?notice=already-deleted-gemini');
    expect(await page('/keys?notice=already-deleted-gemini')).toContain(
      '<p class="notice" role="status">Your Gemini key was already deleted.</p>',
    );
    expect(storedKeys.size).toBe(0);
  });

  it('rejects deleting an unknown provider', async () => {
    await post('/keys', { provider: 'groq', key: 'gsk_kept_8888' });
    const response = await post('/keys/openai/delete');

    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<h1>Your own model keys</h1>');
    expect(html).toContain(
      '<p class="error" role="alert">Unknown provider &quot;openai&quot;: use groq or gemini.</p>',
    );
    expect(html).toContain('…8888');
    expect(storedKeys.size).toBe(1);
  });

  it('shows no notice for names of object properties', async () => {
    for (const notice of ['constructor', 'toString', '__proto__']) {
      expect(await page(`/keys?notice=${notice}`), notice).not.toContain('class="notice"');
    }
  });
});
