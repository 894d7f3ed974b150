import { eq } from 'drizzle-orm';
import { expect } from 'vitest';
import { patchRequests } from '../../src/db/schema/index.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { applyQueue, handleApplyJob, type ApplyJobData } from '../../src/jobs/apply.ts';
import { headText, proposedText, type ApplyTestContext } from './apply-context.ts';
import { insertReadyPatchRequest, type GitHubTestContext } from './github-context.ts';
import type { TestContext } from './context.ts';
import { runDueJob } from './jobs.ts';

/** Inserts a ready patch request of the context's user that changes `app.txt`. */
export function insertAppTextRequest(applyContext: ApplyTestContext) {
  return insertReadyPatchRequest(applyContext.setup.context, {
    runId: applyContext.runId,
    userId: applyContext.user.id,
    files: [{ path: 'app.txt', originalText: headText, proposedText }],
    withFindings: true,
  });
}

/** Returns the stored row of patch request `id`. */
export async function storedPatchRequest(setup: GitHubTestContext, id: string) {
  const [row] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, id));
  return row!;
}

/** Returns the apply jobs of the patch request, oldest first. */
export function listApplyJobs(setup: GitHubTestContext, patchRequestId: string) {
  return setup.context.database.sql<{ id: string; data: ApplyJobData; start_after: string; state: string }[]>`
    SELECT id, data, start_after, state FROM pgboss.job
    WHERE name = ${applyQueue} AND data->>'patchRequestId' = ${patchRequestId}
    ORDER BY created_on, id`;
}

/** Runs apply job `jobId` as a worker does (see `runDueJob`). */
export function runApplyJob(setup: GitHubTestContext, jobId: string, whileActive?: () => Promise<void>) {
  return runDueJob<ApplyJobData>(
    setup.context,
    applyQueue,
    jobId,
    (job) => handleApplyJob(setup.context, job),
    whileActive,
  );
}

/** Pg-boss states of an apply job that `storeApplyJob` sets up. */
export type StoredApplyJobState = 'created' | 'retry' | 'active' | 'failed';

/**
 * Queues an apply job of patch request `request` to start in 20 minutes, stores it as the
 * request's apply job, and puts it in pg-boss state `state`. `created` waits to start, `retry`
 * waits after a failed attempt, `active` runs, and `failed` ended after its last attempt, which
 * stored its error as the request's `applyError`. Returns the job's id.
 */
export async function storeApplyJob(
  context: TestContext,
  request: { id: string; userId: string },
  state: StoredApplyJobState,
): Promise<string> {
  const data: ApplyJobData = { patchRequestId: request.id, userId: request.userId };
  const jobId = await context.boss.send(applyQueue, data, { startAfter: new Date(Date.now() + 20 * 60_000) });
  expect(jobId).not.toBeNull();
  await context.database.sql`
    UPDATE pgboss.job SET state = ${state} WHERE name = ${applyQueue} AND id = ${jobId!}`;
  const applyError = state === 'failed' ? 'Applying failed: the job failed on each of its 3 attempts.' : null;
  await context.db.update(patchRequests).set({ applyJobId: jobId, applyError }).where(eq(patchRequests.id, request.id));
  return jobId!;
}

/** Returns the HTML of the preview page of patch request `id`, for the session `cookie`. */
export async function fetchPreviewPage(applyContext: ApplyTestContext, cookie: string, id: string) {
  const response = await applyContext.app.request(`/patch-requests/${id}`, { headers: { cookie } });
  expect(response.status).toBe(200);
  return response.text();
}

/** Returns `GET /api/patch-requests/:id` for the context's user. */
export async function fetchPreviewJson(applyContext: ApplyTestContext, id: string) {
  const response = await applyContext.app.request(`/api/patch-requests/${id}`, {
    headers: { authorization: `Bearer ${applyContext.user.token}` },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as { applyError: string | null; rateLimitWait: unknown; otherApplyWait: unknown };
}

/**
 * Routes the fake GitHub's reads of the pull request through a hook. `set` registers a hook
 * that the next read runs, once, before GitHub responds.
 */
export function hookPullRequestReads(setup: GitHubTestContext): { set(hook: (() => Promise<void>) | null): void } {
  let next: (() => Promise<void>) | null = null;
  const readPullRequest = defaultRoutes.find(
    (route) => route.method === 'GET' && route.pattern === '/repos/:owner/:repo/pulls/:pull_number',
  )!;
  setup.fake.addRoute({
    ...readPullRequest,
    async handle(context) {
      const hook = next;
      next = null;
      await hook?.();
      return readPullRequest.handle(context);
    },
  });
  return {
    set(hook) {
      next = hook;
    },
  };
}

/**
 * Binds the helpers above to a test file's context and session cookie, which `get` returns once
 * `beforeAll` has created them.
 */
export function bindApplyJobHelpers(get: () => { applyContext: ApplyTestContext; cookie: string }) {
  return {
    newRequest: () => insertAppTextRequest(get().applyContext),
    stored: (id: string) => storedPatchRequest(get().applyContext.setup, id),
    applyJobs: (patchRequestId: string) => listApplyJobs(get().applyContext.setup, patchRequestId),
    runApplyJob: (jobId: string, whileActive?: () => Promise<void>) =>
      runApplyJob(get().applyContext.setup, jobId, whileActive),
    previewPage: (id: string) => fetchPreviewPage(get().applyContext, get().cookie, id),
    previewJson: (id: string) => fetchPreviewJson(get().applyContext, id),
  };
}
