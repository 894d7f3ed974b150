import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/keys/master-keys.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser, formBody, formHeaders } from '../helpers/web.ts';

describe('keys pages with the real key service', () => {
  let context: TestContext;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    context = await createTestContext();
    app = createApp(context);
  });
  afterAll(async () => {
    await context?.close();
  });

  it('lists no keys for a new user', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-user' });
    const response = await app.request('/keys', { headers: { cookie: user.cookie } });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('No keys stored');
  });

  it('returns 404 when deleting a key the user lacks', async () => {
    const user = await createSignedInUser(context.db, { login: 'real-keys-stranger' });
    const response = await app.request('/keys/groq/delete', {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken }),
    });
    expect(response.status).toBe(404);
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
