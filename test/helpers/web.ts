import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { count, eq } from 'drizzle-orm';
import {
  findings,
  installations,
  patchRequestFindings,
  patchRequests,
  prRuns,
  users,
  type Plan,
} from '../../src/db/schema/index.ts';
import type { Database } from '../../src/db/client.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { createSession } from '../../src/web/session/session-store.ts';
import { testPlatformKeys, createTestContext, type TestContext } from './context.ts';

export interface SignedInUser {
  userId: string;
  login: string;
  /** Value for the Cookie header. */
  cookie: string;
  csrfToken: string;
}

/** Creates a user with a live session, as a finished GitHub sign-in would. */
export async function createSignedInUser(
  db: Database,
  input: { login: string; role?: 'user' | 'admin'; plan?: Plan; tokenLimit?: number; tokensUsed?: number },
): Promise<SignedInUser> {
  const [user] = await db
    .insert(users)
    .values({
      login: input.login,
      role: input.role ?? 'user',
      plan: input.plan ?? 'free',
      tokenLimit: input.tokenLimit ?? 1000,
      tokensUsed: input.tokensUsed ?? 0,
    })
    .returning({ id: users.id });
  const session = await createSession(db, user!.id, 1);
  return {
    userId: user!.id,
    login: input.login,
    cookie: `fixwright_session=${session.token}`,
    csrfToken: session.csrfToken,
  };
}

/** Encodes fields as a form body, repeating a key for each value of an array. */
export function formBody(fields: Record<string, string | string[]>): string {
  const body = new URLSearchParams();
  for (const [key, value] of Object.entries(fields)) {
    for (const item of Array.isArray(value) ? value : [value]) body.append(key, item);
  }
  return body.toString();
}

/**
 * Encodes fields as a multipart form body, as `curl -F` sends it. A File value becomes a file
 * part, and an array repeats the field for each value.
 */
export function multipartBody(fields: Record<string, string | File | (string | File)[]>): FormData {
  const body = new FormData();
  for (const [key, value] of Object.entries(fields)) {
    for (const item of Array.isArray(value) ? value : [value]) body.append(key, item);
  }
  return body;
}

/** Returns a text file named `name` for a multipart body, as a file input uploads it. */
export function textFile(name: string, text: string): File {
  return new File([text], name, { type: 'text/plain' });
}

/**
 * Posts Apply of patch request `id` as public/app.js sends it with htmx: JSON to the API, with
 * the CSRF token in a header.
 */
export function postApplyAsScript(
  app: ReturnType<typeof createApp>,
  user: SignedInUser,
  id: string,
  body: Record<string, string>,
): Promise<Response> {
  return Promise.resolve(
    app.request(`/api/patch-requests/${id}/apply`, {
      method: 'POST',
      headers: {
        cookie: user.cookie,
        'hx-request': 'true',
        'x-csrf-token': user.csrfToken,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify(body),
    }),
  );
}

/** Headers of a browser form post with the user's cookie. */
export function formHeaders(user: SignedInUser, extra: Record<string, string> = {}) {
  return { cookie: user.cookie, 'content-type': 'application/x-www-form-urlencoded', ...extra };
}

/** Lists the ids of the findings that a patch request covers, sorted. */
export async function listPatchRequestFindingIds(db: Database, patchRequestId: string): Promise<string[]> {
  const rows = await db
    .select()
    .from(patchRequestFindings)
    .where(eq(patchRequestFindings.patchRequestId, patchRequestId));
  return rows.map((row) => row.findingId).sort();
}

let nextInstallationId = 1000;

/** Creates an installation owned by the user and one completed run with the given findings. */
export async function createRunWithFindings(
  db: Database,
  input: {
    userId: string;
    title?: string;
    repository?: string;
    status?: 'completed' | 'analyzing' | 'superseded';
    findings: { path: string; line: number; message?: string; excerpt?: string; severity?: 'error' | 'warning' | 'notice' }[];
  },
) {
  const installationId = nextInstallationId++;
  const repository = input.repository ?? `owner${installationId}/demo`;
  await db.insert(installations).values({
    id: installationId,
    accountLogin: repository.split('/')[0]!,
    accountId: installationId,
    accountType: 'User',
    userId: input.userId,
  });
  const [run] = await db
    .insert(prRuns)
    .values({
      installationId,
      repositoryId: installationId,
      repository,
      prNumber: 7,
      prTitle: input.title ?? 'Tidy the handler',
      baseSha: 'a'.repeat(40),
      headSha: 'b'.repeat(40),
      headRef: 'feature',
      headRepository: repository,
      status: input.status ?? 'completed',
    })
    .returning();
  const rows =
    input.findings.length === 0
      ? []
      : await db
          .insert(findings)
          .values(
            input.findings.map((finding, index) => ({
              runId: run!.id,
              path: finding.path,
              startLine: finding.line,
              endLine: finding.line,
              ruleId: 'debug/console-log',
              severity: finding.severity ?? ('warning' as const),
              message: finding.message ?? 'Remove the console.log call.',
              excerpt: finding.excerpt ?? "console.log('x');",
              fingerprint: `fp-${index}-${finding.path}-${finding.line}`,
            })),
          )
          .returning();
  return { installationId, run: run!, findings: rows };
}

/**
 * The web app on a fresh test context, with a signed-in user who has an API token and owns a
 * run with findings on line 2 of src/a.ts and line 4 of src/b.ts.
 */
export interface RunWebTestContext {
  context: TestContext;
  app: ReturnType<typeof createApp>;
  user: SignedInUser;
  apiToken: string;
  setup: Awaited<ReturnType<typeof createRunWithFindings>>;
  /** Requests a patch request for every finding of the run through the API. */
  postPatchRequest(): Promise<Response>;
  /** Posts a form as the signed-in user, as htmx does when `htmx` is true. */
  postForm(path: string, fields: Record<string, string | string[]>, htmx: boolean): Promise<Response>;
  /** Counts the patch requests of the run. */
  countPatchRequests(): Promise<number>;
}

export async function createRunWebTestContext(input: {
  webhookSecret: string;
  login: string;
}): Promise<RunWebTestContext> {
  const context = await createTestContext({ WEBHOOK_SECRET: input.webhookSecret, ...testPlatformKeys });
  const app = createApp(context);
  // An allowance that covers every preview here, which the platform key charges.
  const user = await createSignedInUser(context.db, { login: input.login, tokenLimit: 100_000 });
  const { token: apiToken } = await mintApiToken(context.db, user.userId, 'tests');
  const setup = await createRunWithFindings(context.db, {
    userId: user.userId,
    findings: [
      { path: 'src/a.ts', line: 2 },
      { path: 'src/b.ts', line: 4 },
    ],
  });

  return {
    context,
    app,
    user,
    apiToken,
    setup,
    postPatchRequest: async () =>
      app.request(`/api/runs/${setup.run.id}/patch-requests`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ findingIds: setup.findings.map((finding) => finding.id) }),
      }),
    postForm: async (path, fields, htmx) =>
      app.request(path, {
        method: 'POST',
        headers: formHeaders(user, htmx ? { 'hx-request': 'true' } : {}),
        body: formBody({ _csrf: user.csrfToken, ...fields }),
      }),
    countPatchRequests: async () => {
      const [row] = await context.db
        .select({ value: count() })
        .from(patchRequests)
        .where(eq(patchRequests.runId, setup.run.id));
      return row!.value;
    },
  };
}

/**
 * Serves the app of `context` on a free port of 127.0.0.1, as `fixwright start` would, or over
 * TLS with `options.tls`. Returns its base URL, its port and a function that closes the server
 * and its open connections.
 */
export async function serveTestApp(
  context: TestContext,
  options: { tls?: { key: string; cert: string } } = {},
): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const server = serve({
    fetch: createApp(context).fetch,
    hostname: '127.0.0.1',
    port: 0,
    ...(options.tls ? { createServer: https.createServer, serverOptions: options.tls } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      (server as unknown as { closeAllConnections(): void }).closeAllConnections();
      await closed;
    },
  };
}
