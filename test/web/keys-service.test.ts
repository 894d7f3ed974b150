import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteUserKey } from '../../src/keys/user-keys.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser, formBody, formHeaders } from '../helpers/web.ts';

/** True while src/keys/user-keys.ts is the stand-in whose functions throw "not implemented". */
async function keyServiceIsStandIn(): Promise<boolean> {
  try {
    await deleteUserKey(undefined as never, { userId: '', provider: 'groq' });
    return false;
  } catch (error) {
    return error instanceof Error && error.message === 'not implemented';
  }
}

const standIn = await keyServiceIsStandIn();

// Runs against the real key service once it is merged; until then only the stand-in exists.
describe.skipIf(standIn)('keys pages with the real key service', () => {
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
});
