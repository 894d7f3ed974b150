import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userApiKeys } from '../../src/db/schema/index.ts';
import { encryptUserKey } from '../../src/keys/encryption.ts';
import { Keyring } from '../../src/keys/master-keys.ts';
import { rejectedReason } from '../../src/keys/own-keys.ts';
import { getProviderOrder } from '../../src/keys/user-keys.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser, formBody, formHeaders } from '../helpers/web.ts';

describe('keys pages with the real key service', () => {
  let context: TestContext;
  let app: ReturnType<typeof createApp>;
  let groq: FakeGroq;

  beforeAll(async () => {
    groq = await startFakeGroq();
    context = await createTestContext({
      GROQ_BASE_URL: groq.url,
      GROQ_API_KEY: 'gsk_keys_page_platform_key',
    });
    app = createApp(context);
  });
  afterAll(async () => {
    await context?.close();
    await groq?.close();
  });

  async function storeGeminiKey(userId: string, key: string) {
    const encrypted = await encryptUserKey(context.keyring, { userId, provider: 'gemini' }, key);
    await context.db.insert(userApiKeys).values({ userId, provider: 'gemini', ...encrypted, lastFour: key.slice(-4) });
  }

  it('logs one saved line per save', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-saver' });
    const before = context.logs.length;

    const page = await app.request('/keys', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken, provider: 'groq', key: 'gsk_pageSavedKey0123456789abcdefghijklmnopqrstuvwxyz' }),
    });
    const api = await app.request('/api/user/keys/groq', {
      method: 'PUT',
      headers: { cookie: user.cookie, 'x-csrf-token': user.csrfToken, 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'gsk_apiSavedKey0123456789abcdefghijklmnopqrstuvwxyzA' }),
    });

    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/keys?notice=saved');
    expect(api.status).toBe(200);
    const saved = context.logs.slice(before).filter((line) => line.event === 'user_key.saved');
    expect(saved).toHaveLength(2);
    expect(saved.map((line) => line.replaced)).toEqual([false, true]);
    for (const line of saved) {
      expect(line.userId).toBe(user.userId);
      expect(line.provider).toBe('groq');
      expect(line.masterKeyVersion).toBe(1);
      expect(typeof line.requestId).toBe('string');
    }
    expect(saved[0]!.requestId).not.toBe(saved[1]!.requestId);
  });

  it('words a rejected key for the keys page', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-rejected' });
    const key = 'AIzaRejectedKeyPage0123456789abcdefghijklmnopq';
    const encrypted = await encryptUserKey(context.keyring, { userId: user.userId, provider: 'gemini' }, key);
    await context.db.insert(userApiKeys).values({
      userId: user.userId,
      provider: 'gemini',
      ...encrypted,
      lastFour: key.slice(-4),
      unusableCause: 'rejected',
      unusableReason: rejectedReason('gemini', 403),
    });

    const page = await (await app.request('/keys', { headers: { cookie: user.cookie } })).text();
    const api = await app.request('/api/user/keys', { headers: { cookie: user.cookie } });

    expect(page).toContain(
      '<p class="error">Gemini rejected your saved Gemini key with HTTP 403. Previews skip this ' +
        'key until you save it again with the form below.</p>',
    );
    expect(page).not.toContain('on the keys page');
    expect(page).not.toContain('platform key was not used');
    // The API and preview errors are read elsewhere, so they keep naming the keys page.
    const listed = (await api.json()) as { keys: { unusableReason: string }[] };
    expect(listed.keys[0]!.unusableReason).toBe(
      'Gemini rejected your saved Gemini key with HTTP 403. Previews skip this key until you save ' +
        'it again on the keys page.',
    );
  });

  it('lists no keys for a new user', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-user' });
    const response = await app.request('/keys', { headers: { cookie: user.cookie } });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('No keys stored');
  });

  it('notes a second delete of a key', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-delete-twice' });
    await storeGeminiKey(user.userId, 'AIzaOwnGeminiKeyDeletedTwice5678');
    const remove = () =>
      app.request('/keys/gemini/delete', {
        method: 'POST',
        headers: formHeaders(user),
        body: formBody({ _csrf: user.csrfToken }),
      });

    const first = await remove();
    const second = await remove();

    expect(first.status).toBe(303);
    expect(first.headers.get('location')).toBe('/keys?notice=deleted');
    expect(second.status).toBe(303);
    expect(second.headers.get('location')).toBe('/keys?notice=already-deleted-gemini');
    const page = await app.request('/keys?notice=already-deleted-gemini', { headers: { cookie: user.cookie } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<p class="notice" role="status">Your Gemini key was already deleted.</p>');
    expect(html).toContain('No keys stored');
    const rows = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, user.userId));
    expect(rows).toEqual([]);
  });

  it('rejects deleting an unknown provider', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-delete-openai' });
    const response = await app.request('/keys/openai/delete', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken }),
    });

    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<h1>Your own model keys</h1>');
    expect(html).toContain(
      '<p class="error" role="alert">Unknown provider &quot;openai&quot;: use groq or gemini.</p>',
    );
  });

  it('shows and changes the provider order', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-order' });
    await storeGeminiKey(user.userId, 'AIzaOwnGeminiKeyForTheOrder1234');
    const page = async () => {
      const response = await app.request('/keys', { headers: { cookie: user.cookie } });
      expect(response.status).toBe(200);
      const html = await response.text();
      return [...html.matchAll(/<li data-provider="(\w+)">[^<]*<span class="muted">([^<]*)<\/span>/g)].map(
        (match) => [match[1], match[2]],
      );
    };

    expect(await page()).toEqual([
      ['groq', 'the platform key, charged to your allowance'],
      ['gemini', 'your own key'],
    ]);

    const response = await app.request('/keys/order', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken, first: 'gemini' }),
    });

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/keys?notice=order-saved');
    expect(await getProviderOrder(context.db, user.userId)).toEqual(['gemini', 'groq']);
    expect(await page()).toEqual([
      ['gemini', 'your own key'],
      ['groq', 'left out: previews use your own key of an earlier provider instead of the platform key'],
    ]);
  });

  it('rejects an unknown first provider', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-order-bad' });
    const response = await app.request('/keys/order', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken, first: 'openai' }),
    });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('<h1>Your own model keys</h1>');
    expect(html).toContain(
      'Invalid provider &quot;openai&quot; under &quot;Try first&quot;: choose Groq or Gemini ' +
        'and press &quot;Save order&quot; again.',
    );
    expect(await getProviderOrder(context.db, user.userId)).toEqual(['groq', 'gemini']);
  });

  it('answers 503 when no master key is configured', async () => {
    const keyless = await createTestContext({}, { keyring: new Keyring([]) });
    try {
      const user = await createSignedInUser(keyless.db, { login: 'keyless-user' });
      const response = await createApp(keyless).request('/keys', {
        method: 'POST',
        headers: formHeaders(user),
        body: formBody({ _csrf: user.csrfToken, provider: 'groq', key: 'gsk_wellFormedButUnchecked123' }),
      });
      expect(response.status).toBe(503);
      expect(await response.text()).toContain('MASTER_KEY');
    } finally {
      await keyless.close();
    }
  });
});
