import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let context: TestContext;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  context = await createTestContext();
  app = createApp(context);
});
afterAll(async () => {
  await context?.close();
});

/** Sends an unauthenticated API request, which fails with a JSON error that names its id. */
async function requestWithId(id?: string) {
  const response = await app.request('/api/user/usage', {
    headers: id === undefined ? {} : { 'x-request-id': id },
  });
  const body = (await response.json()) as { error: { requestId: string } };
  return { header: response.headers.get('x-request-id'), bodyId: body.error.requestId };
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('X-Request-Id', () => {
  it('keeps a valid id from the request', async () => {
    const { header, bodyId } = await requestWithId('proxy-42=a_b');
    expect(header).toBe('proxy-42=a_b');
    expect(bodyId).toBe('proxy-42=a_b');
  });

  it('replaces an id with other characters', async () => {
    const { header, bodyId } = await requestWithId('bad id\u0007');
    expect(header).toMatch(uuidPattern);
    expect(bodyId).toBe(header);
  });

  it('replaces an id over 255 characters', async () => {
    const { header } = await requestWithId('a'.repeat(256));
    expect(header).toMatch(uuidPattern);
  });

  it('makes one without a header', async () => {
    const first = await requestWithId();
    const second = await requestWithId();
    expect(first.header).toMatch(uuidPattern);
    expect(second.header).not.toBe(first.header);
  });
});
