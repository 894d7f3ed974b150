import { and, eq, isNull } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { apiTokens, patchFiles, patchRequests } from '../../src/db/schema/index.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { storedKeys } from '../fakes/user-keys.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import {
  createRunWithFindings,
  createSignedInUser,
  formBody,
  formHeaders,
  type SignedInUser,
} from '../helpers/web.ts';

vi.mock('../../src/keys/user-keys.ts', () => import('../fakes/user-keys.ts'));

let context: TestContext;
let app: ReturnType<typeof createApp>;
let owner: SignedInUser;
let stranger: SignedInUser;
let runId: string;
let findingId: string;
let patchRequestId: string;
let fileId: string;
let tokenId: string;

beforeAll(async () => {
  context = await createTestContext();
  app = createApp(context);
  owner = await createSignedInUser(context.db, { login: 'owner' });
  stranger = await createSignedInUser(context.db, { login: 'stranger' });
  const created = await createRunWithFindings(context.db, {
    userId: owner.userId,
    findings: [{ path: 'src/a.ts', line: 2 }],
  });
  runId = created.run.id;
  findingId = created.findings[0]!.id;
  const [request] = await context.db
    .insert(patchRequests)
    .values({ runId, userId: owner.userId, status: 'ready', filesTotal: 1, filesDone: 1 })
    .returning();
  patchRequestId = request!.id;
  const [file] = await context.db
    .insert(patchFiles)
    .values({ patchRequestId, path: 'src/a.ts', status: 'ready', diff: '' })
    .returning();
  fileId = file!.id;
  tokenId = (await mintApiToken(context.db, owner.userId, 'owner token')).id;
});
afterAll(async () => {
  await context?.close();
});
beforeEach(() => {
  storedKeys.clear();
  storedKeys.set(`${owner.userId}:groq`, {
    provider: 'groq',
    lastFour: 'abcd',
    createdAt: new Date(),
    updatedAt: new Date(),
    lastUsedAt: null,
    unusableReason: null,
  });
});

function asStranger(path: string, method = 'GET', fields: Record<string, string | string[]> = {}) {
  if (method === 'GET') {
    // Fragments serve only htmx requests, which the page sends. Pages ignore the header.
    return app.request(path, { headers: { cookie: stranger.cookie, 'hx-request': 'true' } });
  }
  return app.request(path, {
    method,
    headers: formHeaders(stranger),
    body: formBody({ _csrf: stranger.csrfToken, ...fields }),
  });
}

describe("another user's ids return 404", () => {
  const pageRoutes: [string, () => [string, string?, Record<string, string | string[]>?]][] = [
    ['run page', () => [`/runs/${runId}`]],
    ['preview fix', () => [`/runs/${runId}/patch-requests`, 'POST', { findingIds: [findingId] }]],
    ['preview page', () => [`/patch-requests/${patchRequestId}`]],
    ['progress fragment', () => [`/patch-requests/${patchRequestId}/progress`]],
    ['files fragment', () => [`/patch-requests/${patchRequestId}/files`]],
    ['regenerate file', () => [`/patch-requests/${patchRequestId}/files/${fileId}/regenerate`, 'POST']],
    ['apply', () => [`/patch-requests/${patchRequestId}/apply`, 'POST']],
    ['revoke token', () => [`/tokens/${tokenId}/revoke`, 'POST']],
  ];

  it.each(pageRoutes)('%s', async (_name, route) => {
    const [path, method, fields] = route();
    const response = await asStranger(path, method, fields);
    expect(response.status).toBe(404);
    expect(await response.text()).toContain('not found');
  });

  it("answers a key delete with the stranger's own keys", async () => {
    // Keys are named by provider, so the stranger's delete reaches only the stranger's keys.
    const response = await asStranger('/keys/groq/delete', 'POST');

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/keys?notice=already-deleted-groq');
    expect(storedKeys.has(`${owner.userId}:groq`)).toBe(true);
  });

  it('returns 404 for the owner with unknown ids too', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    for (const path of [`/runs/${unknown}`, `/patch-requests/${unknown}`, '/runs/not-a-uuid']) {
      const response = await app.request(path, { headers: { cookie: owner.cookie } });
      expect(response.status).toBe(404);
    }
  });

  it('returns 404 for a file of another request', async () => {
    const [other] = await context.db
      .insert(patchRequests)
      .values({ runId, userId: stranger.userId, status: 'ready' })
      .returning();
    const response = await asStranger(
      `/patch-requests/${other!.id}/files/${fileId}/regenerate`,
      'POST',
    );
    expect(response.status).toBe(404);
  });

  it('returns 404 on the JSON API', async () => {
    for (const path of [`/api/runs/${runId}`, `/api/patch-requests/${patchRequestId}`]) {
      const response = await app.request(path, { headers: { cookie: stranger.cookie } });
      expect(response.status).toBe(404);
      expect((await response.json()).error.code).toBe('not_found');
    }
  });

  it('leaves the owner data unchanged', async () => {
    const [file] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, fileId));
    expect(file!.generation).toBe(0);
    expect(file!.status).toBe('ready');
    const live = await context.db
      .select()
      .from(apiTokens)
      .where(and(eq(apiTokens.id, tokenId), isNull(apiTokens.revokedAt)));
    expect(live).toHaveLength(1);
    expect(storedKeys.has(`${owner.userId}:groq`)).toBe(true);
  });

  it('lists no foreign runs on the home page', async () => {
    const html = await (await asStranger('/')).text();
    expect(html).not.toContain(runId);
    expect(html).toContain('No runs yet');
  });

  it("hides the owner's tokens and keys", async () => {
    const tokens = await (await asStranger('/tokens')).text();
    expect(tokens).not.toContain('owner token');
    const keys = await (await asStranger('/keys')).text();
    expect(keys).not.toContain('…abcd');
    expect(keys).toContain('No keys stored');
  });
});
