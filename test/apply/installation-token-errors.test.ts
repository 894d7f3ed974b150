// Errors from the installation token endpoint. A suspension or an uninstall is recorded and
// rejected with 409, but any other 403 (a secondary rate limit) is not taken for a suspension.
import { eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { installations, patchRequests } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import {
  createGitHubTestContext,
  insertInstallation,
  insertReadyPatchRequest,
  insertRun,
  insertUser,
  owner,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

const headText = 'one\ntwo\nthree\n';
const proposedText = 'one\nTWO\nthree\n';

let setup: GitHubTestContext | undefined;

/** Builds a context whose installation has minted no token yet, and a ready patch request. */
async function freshApply() {
  setup = await createGitHubTestContext({
    base: { 'app.txt': 'one\n' },
    head: { 'app.txt': headText },
  });
  const current = setup;
  const app = createApp(current.context);
  const user = await insertUser(current.context);
  await insertInstallation(current.context, { id: current.installationId, userId: user.id });
  const run = await insertRun(current.context, {
    installationId: current.installationId,
    headSha: current.git.headSha,
    baseSha: current.git.baseSha,
  });
  const request = await insertReadyPatchRequest(current.context, {
    runId: run.id,
    userId: user.id,
    files: [{ path: 'app.txt', originalText: headText, proposedText }],
  });
  const apply = (body?: unknown) =>
    app.request(`/api/patch-requests/${request.id}/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const stored = async () => {
    const [row] = await current.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    return row!;
  };
  const installation = async () => {
    const [row] = await current.context.db
      .select()
      .from(installations)
      .where(eq(installations.id, current.installationId));
    return row!;
  };
  return { setup: current, apply, stored, installation };
}

afterEach(async () => {
  await setup?.close();
  setup = undefined;
});

describe('apply when the installation is gone on GitHub', () => {
  it('answers 409 for a suspension not yet recorded', async () => {
    const { setup: current, apply, stored, installation } = await freshApply();
    current.fake.setInstallation({
      id: current.installationId,
      account: { login: owner, id: 1, type: 'Organization' },
      permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
      suspended: true,
    });
    const response = await apply();

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.message).toContain(`installation ${current.installationId} on ${owner} is suspended`);
    expect(error.message).toContain(`An owner of ${owner} must unsuspend it`);
    expect(error.account).toBe(owner);
    expect(error.reason).toBe('suspended');
    expect((await installation()).suspendedAt).not.toBeNull();
    const row = await stored();
    expect(row.applyStartedAt).toBeNull();
    expect(row.appliedAt).toBeNull();
  });

  it('answers 409 for an uninstall not yet recorded', async () => {
    const { setup: current, apply, stored } = await freshApply();
    current.fake.removeInstallation(current.installationId);
    const response = await apply({ mode: 'suggestions' });

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.message).toContain(`installation ${current.installationId} on ${owner} no longer exists`);
    expect(error.message).toContain(`Install the app on ${owner} again`);
    expect(error.account).toBe(owner);
    expect(error.reason).toBe('uninstalled');
    expect((await stored()).applyStartedAt).toBeNull();
  });

  it('does not record a 403 rate limit on the token as a suspension', async () => {
    const { setup: current, apply, installation } = await freshApply();
    current.fake.queueResponse({
      method: 'POST',
      path: /\/app\/installations\/\d+\/access_tokens$/,
      status: 403,
      body: {
        message: 'You have exceeded a secondary rate limit. Please wait a few minutes.',
        documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
      },
      headers: { 'retry-after': '3600' },
    });
    const response = await apply();

    // The apply waits for the limit in an apply job instead of failing as for a suspension.
    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(202);
    expect(body.status).toBe('waiting');
    expect((await installation()).suspendedAt).toBeNull();

    // A press during the wait returns the same wait and sends GitHub nothing.
    const requestsBefore = current.fake.requests.length;
    const again = await apply();
    const againBody = await again.json();
    expect(again.status, JSON.stringify(againBody)).toBe(202);
    expect(againBody.rateLimitedUntil).toBe(body.rateLimitedUntil);
    expect(current.fake.requests.length).toBe(requestsBefore);
  }, 60_000);
});
