// An apply that GitHub rate-limits for longer than Octokit waits in the process gets 202 and
// continues in an apply job that starts once the limit lifts, without writing a fix twice.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { sharedFixDiffWorker } from '../../src/analysis/diff-worker.ts';
import { loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import { testPlatformKeys } from '../helpers/context.ts';
import { patchFiles, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { primaryRateLimitError, secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { gitDataRoutes } from '../../src/demo/fakes/github/git-data.ts';
import { reviewRoutes } from '../../src/demo/fakes/github/reviews.ts';
import type { Route } from '../../src/demo/fakes/github/router.ts';
import type { FakeState } from '../../src/demo/fakes/github/state.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { applyQueue, type ApplyJobData } from '../../src/jobs/apply.ts';
import { cancelInstallationWork } from '../../src/runs/cancel-installation-work.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  readRefPattern,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { bindApplyJobHelpers, hookPullRequestReads } from '../helpers/apply-jobs.ts';
import { prNumber, repository, type GitHubTestContext } from '../helpers/github-context.ts';

const maxWaitSeconds = 3600;

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let cookie: string;
/**
 * Reset time of the primary rate limit that the read of the branch gets after a ref update
 * whose response is lost, or null for no lost response.
 */
let limitAfterRefUpdate: number | null = null;
/**
 * Reset time of the primary rate limit that the read of the reviews gets after a review POST
 * whose response is lost, or null for no lost response.
 */
let limitAfterReviewPost: number | null = null;
const reviewsPath = `/repos/${repository}/pulls/${prNumber}/reviews`;
let pullRequestReads: ReturnType<typeof hookPullRequestReads>;

const git = (...args: string[]) => gitIn(setup, ...args);

const { newRequest, stored, applyJobs, runApplyJob, previewPage, previewJson } = bindApplyJobHelpers(() => ({
  applyContext,
  cookie,
}));

/** Counts the ref updates that GitHub carried out. */
function refUpdates(since: number): number {
  return setup.fake.requests
    .slice(since)
    .filter((request) => request.method === 'PATCH' && refPattern.test(request.path)).length;
}

/** Counts the reviews that GitHub posted. */
function reviewPosts(since: number): number {
  return setup.fake.requests
    .slice(since)
    .filter((request) => request.method === 'POST' && request.path === reviewsPath).length;
}

/**
 * Returns write route `route` changed so that, while `takeReset` returns a reset time, GitHub
 * carries out the write, returns 502 in place of its response, and rate-limits the next
 * request to `readPath` until that time.
 */
function loseResponseThenLimit(
  route: Route<FakeState>,
  readPath: string | RegExp,
  takeReset: () => number | null,
): Route<FakeState> {
  return {
    ...route,
    async handle(context) {
      const response = await route.handle(context);
      if (response.status >= 300) return response;
      const reset = takeReset();
      if (reset === null) return response;
      setup.fake.queueResponse(primaryRateLimitError('GET', readPath, reset));
      return { status: 502, body: { message: 'Server Error' } };
    },
  };
}

/**
 * Checks that patch request `id` is not applied, stores `write` as unconfirmed, and has an
 * apply job that waits for a rate limit until `until`, and that its page shows both.
 */
async function expectUnconfirmedWhileWaiting(
  id: string,
  write: { mode: 'commit' | 'suggestions'; commitSha: string | null },
  until: string,
) {
  const row = await stored(id);
  expect(row.appliedAt).toBeNull();
  expect(row.applyStartedAt).toBeNull();
  expect(row.applyError).toBeNull();
  expect(row.applyRateLimitedUntil?.toISOString()).toBe(until);
  expect(row.applyUnconfirmedAt).not.toBeNull();
  expect(row.applyUnconfirmedMode).toBe(write.mode);
  expect(row.applyUnconfirmedCommitSha).toBe(write.commitSha);
  const json = (await previewJson(id)) as unknown as Record<string, unknown>;
  expect(json.rateLimitWait).toEqual({ job: applyQueue, until });
  expect(json.applyUnconfirmed).toEqual({ ...write, at: row.applyUnconfirmedAt!.toISOString() });
  // Pressing Apply returns the wait, so the warning names the waiting job as the one that checks.
  const page = await previewPage(id);
  expect(page).toContain('Applying waits for a GitHub rate limit on this installation until');
  const check =
    write.mode === 'commit'
      ? ', and reading the branch to check failed. The waiting apply job checks when it starts: ' +
        'it records that commit if the branch has it, and commits the fixes only if it does not.'
      : ' reviews to check failed. The waiting apply job checks when it starts: it records that ' +
        'review if the pull request has it, and posts the review only if it does not.';
  expect(page).toContain(check);
  expect(page).not.toContain('Apply again to check');
}

/** Checks that patch request `id` stores no unconfirmed write. */
async function expectNoUnconfirmed(id: string) {
  const row = await stored(id);
  expect(row.applyUnconfirmedAt).toBeNull();
  expect(row.applyUnconfirmedMode).toBeNull();
  expect(row.applyUnconfirmedCommitSha).toBeNull();
}

/** Returns the run page's list item of patch request `id` under "Earlier previews". */
async function runPageItem(id: string): Promise<string> {
  const response = await applyContext.app.request(`/runs/${applyContext.runId}`, { headers: { cookie } });
  expect(response.status).toBe(200);
  const page = await response.text();
  const start = page.indexOf(`<li><a href="/patch-requests/${id}">`);
  expect(start).toBeGreaterThanOrEqual(0);
  return page.slice(start, page.indexOf('</li>', start));
}

/** Sets the first rate-limited time of waiting apply job `job` to `minutesAgo` minutes ago. */
async function rateLimitedSinceAgo(job: { id: string; data: ApplyJobData }, minutesAgo: number) {
  const data: ApplyJobData = { ...job.data, rateLimitedSince: Date.now() - minutesAgo * 60_000 };
  await setup.context.database.sql`
    UPDATE pgboss.job SET data = ${JSON.stringify(data)}::jsonb WHERE id = ${job.id}`;
}

/**
 * Checks that apply job `jobId`, which waited for a rate limit, was cancelled because an apply as
 * suggestions replaced it and failed with `failure`, and that the pages show that error and no
 * wait.
 */
async function expectReplacedJobCancelled(patchRequestId: string, jobId: string, failure: string) {
  expect((await applyJobs(patchRequestId)).map((candidate) => candidate.id)).toEqual([jobId]);
  expect((await setup.context.boss.getJobById(applyQueue, jobId))!.state).toBe('cancelled');
  const current = await stored(patchRequestId);
  const applyError =
    'The apply as suggestions replaced the apply job that waited for a GitHub rate limit, and ' +
    `failed: ${failure}`;
  expect(current.applyError).toBe(applyError);
  expect(current.applyRateLimitedUntil).toBeNull();
  expect(current.applyStartedAt).toBeNull();
  expect(current.appliedAt).toBeNull();
  const json = await previewJson(patchRequestId);
  expect(json.applyError).toBe(applyError);
  expect(json.rateLimitWait).toBeNull();
  const page = await previewPage(patchRequestId);
  expect(page).toContain('The apply as suggestions replaced the apply job that waited for a GitHub rate limit');
  expect(page).not.toContain('waits for a GitHub rate limit');
  expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
}

beforeAll(async () => {
  applyContext = await createApplyTestContext({
    env: { GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: String(maxWaitSeconds) },
  });
  setup = applyContext.setup;
  const session = await createSession(setup.context.db, applyContext.user.id, 1);
  cookie = `fixwright_session=${session.token}`;
  const updateRef = gitDataRoutes.find((route) => route.method === 'PATCH')!;
  setup.fake.addRoute(
    loseResponseThenLimit(updateRef, readRefPattern, () => {
      const reset = limitAfterRefUpdate;
      limitAfterRefUpdate = null;
      return reset;
    }),
  );
  const createReview = reviewRoutes.find((route) => route.method === 'POST')!;
  setup.fake.addRoute(
    loseResponseThenLimit(createReview, reviewsPath, () => {
      const reset = limitAfterReviewPost;
      limitAfterReviewPost = null;
      return reset;
    }),
  );
  pullRequestReads = hookPullRequestReads(setup);
});

beforeEach(async () => {
  limitAfterRefUpdate = null;
  limitAfterReviewPost = null;
  pullRequestReads.set(null);
  await resetPullRequestHead(setup);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply under a long rate limit', () => {
  it('continues in a job after the reset', async () => {
    const request = await newRequest();
    const resetSeconds = Math.floor(Date.now() / 1000) + 20 * 60;
    const until = new Date((resetSeconds + 1) * 1000).toISOString();
    setup.fake.queueResponse(primaryRateLimitError('PATCH', refPattern, resetSeconds));

    const response = await requestApply(applyContext, request.id);

    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ id: request.id, status: 'waiting', rateLimitedUntil: until });
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const [job] = await applyJobs(request.id);
    expect(job).toBeDefined();
    expect(job!.state).toBe('created');
    expect(new Date(job!.start_after).toISOString()).toBe(until);
    expect(job!.data.userId).toBe(applyContext.user.id);
    expect(job!.data.rateLimitedSince).toBeGreaterThan(0);
    const waiting = await stored(request.id);
    expect(waiting.applyJobId).toBe(job!.id);
    expect(waiting.applyRateLimitedUntil?.toISOString()).toBe(until);
    expect(waiting.applyStartedAt).toBeNull();
    expect(waiting.appliedAt).toBeNull();
    expect((await previewJson(request.id)).rateLimitWait).toEqual({ job: applyQueue, until });
    const page = await previewPage(request.id);
    expect(page).toContain('Applying waits for a GitHub rate limit on this installation until');
    expect(page).toContain(`datetime="${until}"`);

    await runApplyJob(job!.id);

    const applied = await stored(request.id);
    expect(applied.appliedAt).not.toBeNull();
    expect(applied.applyMode).toBe('commit');
    expect(applied.applyRateLimitedUntil).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(applied.appliedCommitSha);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
    expect((await previewJson(request.id)).rateLimitWait).toBeNull();
    expect(await previewPage(request.id)).not.toContain('waits for a GitHub rate limit');
  });

  it('records a commit pushed before the limit', async () => {
    const request = await newRequest();
    // GitHub updates the ref but the response is lost, and the read of the branch that checks
    // the update is rate-limited.
    const limitReset = Math.floor(Date.now() / 1000) + 30 * 60;
    limitAfterRefUpdate = limitReset;
    const since = setup.fake.requests.length;

    const response = await requestApply(applyContext, request.id);

    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(202);
    const until = new Date((limitReset + 1) * 1000).toISOString();
    expect(body).toEqual({ id: request.id, status: 'waiting', rateLimitedUntil: until });
    const pushed = await git('rev-parse', headBranch);
    expect(pushed).not.toBe(setup.git.headSha);
    const [job] = await applyJobs(request.id);
    expect(job).toBeDefined();
    expect(new Date(job!.start_after).toISOString()).toBe(until);
    // The commit is stored as unconfirmed, so no apply pushes it again before the job runs.
    await expectUnconfirmedWhileWaiting(request.id, { mode: 'commit', commitSha: pushed }, until);
    // The push's `synchronize` event supersedes the run while the job waits. Apply stays
    // enabled, because the unconfirmed commit may be the push that superseded it.
    await setup.context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, applyContext.runId));
    expect(await previewPage(request.id)).toMatch(/<button type="submit" class="primary">\s*Apply/);

    await runApplyJob(job!.id);
    await setup.context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, applyContext.runId));

    const applied = await stored(request.id);
    expect(applied.appliedCommitSha).toBe(pushed);
    expect(applied.applyError).toBeNull();
    await expectNoUnconfirmed(request.id);
    expect(await git('rev-parse', headBranch)).toBe(pushed);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
    expect(refUpdates(since)).toBe(1);
  });

  it('answers a press during the wait with it', async () => {
    const request = await newRequest();
    limitAfterRefUpdate = Math.floor(Date.now() / 1000) + 30 * 60;
    const since = setup.fake.requests.length;
    const first = await requestApply(applyContext, request.id);
    expect(first.status).toBe(202);
    const waiting = (await first.json()) as { rateLimitedUntil: string };
    const pushed = await git('rev-parse', headBranch);
    const [job] = await applyJobs(request.id);
    const write = { mode: 'commit', commitSha: pushed } as const;
    await expectUnconfirmedWhileWaiting(request.id, write, waiting.rateLimitedUntil);
    await setup.context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, applyContext.runId));
    const beforePresses = setup.fake.requests.length;

    // The user presses Apply again before the job starts, and once more after a worker fetched it.
    const again = await requestApply(applyContext, request.id);
    let whileActive: Response | undefined;
    await runApplyJob(job!.id, async () => {
      expect(setup.fake.requests.length).toBe(beforePresses);
      whileActive = await requestApply(applyContext, request.id);
    });
    await setup.context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, applyContext.runId));

    for (const response of [again, whileActive!]) {
      expect(response.status).toBe(202);
      expect(await response.json()).toEqual({
        id: request.id,
        status: 'waiting',
        rateLimitedUntil: waiting.rateLimitedUntil,
      });
    }
    expect((await applyJobs(request.id)).map((candidate) => candidate.id)).toEqual([job!.id]);
    const applied = await stored(request.id);
    expect(applied.appliedCommitSha).toBe(pushed);
    expect(applied.applyError).toBeNull();
    await expectNoUnconfirmed(request.id);
    expect(refUpdates(since)).toBe(1);
    expect(await git('rev-parse', headBranch)).toBe(pushed);
  });

  it('records a review posted before the limit', async () => {
    const request = await newRequest();
    // GitHub posts the review but the response is lost, and the read of the reviews that
    // checks the post is rate-limited.
    const limitReset = Math.floor(Date.now() / 1000) + 30 * 60;
    limitAfterReviewPost = limitReset;
    const since = setup.fake.requests.length;
    const reviewsBefore = setup.fake.reviews.length;

    const response = await requestApply(applyContext, request.id, { mode: 'suggestions' });

    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(202);
    const until = new Date((limitReset + 1) * 1000).toISOString();
    expect(body).toEqual({ id: request.id, status: 'waiting', rateLimitedUntil: until });
    const posted = setup.fake.reviews.slice(reviewsBefore);
    expect(posted).toHaveLength(1);
    expect(posted[0]!.body).toContain(request.id);
    const [job] = await applyJobs(request.id);
    expect(job).toBeDefined();
    expect(job!.data.mode).toBe('suggestions');
    expect(new Date(job!.start_after).toISOString()).toBe(until);
    await expectUnconfirmedWhileWaiting(request.id, { mode: 'suggestions', commitSha: null }, until);

    // A press during the wait returns the wait and sends GitHub nothing.
    const beforePress = setup.fake.requests.length;
    const again = await requestApply(applyContext, request.id, { mode: 'suggestions' });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual(body);
    expect(setup.fake.requests.length).toBe(beforePress);

    await runApplyJob(job!.id);

    const applied = await stored(request.id);
    expect(applied.applyMode).toBe('suggestions');
    expect(applied.appliedReviewId).toBe(posted[0]!.id);
    expect(applied.applyError).toBeNull();
    expect(applied.applyRateLimitedUntil).toBeNull();
    await expectNoUnconfirmed(request.id);
    expect(reviewPosts(since)).toBe(1);
    expect(setup.fake.reviews.length - reviewsBefore).toBe(1);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('counts the maximum wait across presses', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id)).status).toBe(202);
    const [job] = await applyJobs(request.id);
    const until = (await stored(request.id)).applyRateLimitedUntil!.toISOString();
    // The apply was rate-limited 50 minutes ago, and the next limit lifts in 15.
    await rateLimitedSinceAgo(job!, 50);
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 15 * 60));
    const beforePress = setup.fake.requests.length;

    const again = await requestApply(applyContext, request.id);

    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ id: request.id, status: 'waiting', rateLimitedUntil: until });
    expect(setup.fake.requests.length).toBe(beforePress);
    expect((await applyJobs(request.id)).map((candidate) => candidate.id)).toEqual([job!.id]);

    await runApplyJob(job!.id);

    expect((await applyJobs(request.id)).map((candidate) => candidate.id)).toEqual([job!.id]);
    const failed = await stored(request.id);
    expect(failed.applyRateLimitedUntil).toBeNull();
    expect(failed.applyError).toMatch(/^GitHub rate-limited the installation until \S+, later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS/);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('keeps the first limit for a press in another mode', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id, { mode: 'commit' })).status).toBe(202);
    const [job] = await applyJobs(request.id);
    await rateLimitedSinceAgo(job!, 50);
    setup.fake.queueResponse(secondaryRateLimitError('POST', /\/pulls\/\d+\/reviews$/, 15 * 60));

    // Another mode replaces the waiting job, but its maximum wait still counts from the first limit.
    const response = await requestApply(applyContext, request.id, { mode: 'suggestions' });

    expect(response.status).toBe(503);
    const body = (await response.json()) as { error: { message: string; rateLimitedUntil: string } };
    expect(body.error.message).toMatch(/later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS \(3600 s\)/);
    await expectReplacedJobCancelled(request.id, job!.id, body.error.message);
  });

  it('cancels the waiting job when another mode fails', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id, { mode: 'commit' })).status).toBe(202);
    const [job] = await applyJobs(request.id);
    const reviews = setup.fake.reviews.length;
    const diff = vi.spyOn(sharedFixDiffWorker, 'structuredPatch').mockResolvedValueOnce({ status: 'timed_out' });

    let response;
    try {
      response = await requestApply(applyContext, request.id, { mode: 'suggestions' });
    } finally {
      diff.mockRestore();
    }

    expect(response.status).toBe(503);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/^The diff for the suggestions on app\.txt did not finish within 30 s/);
    await expectReplacedJobCancelled(request.id, job!.id, body.error.message);
    expect(setup.fake.reviews).toHaveLength(reviews);
  });

  it('ends a waiting job after a press in another mode applied', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id, { mode: 'commit' })).status).toBe(202);
    const [job] = await applyJobs(request.id);
    const pressed = await requestApply(applyContext, request.id, { mode: 'suggestions' });
    expect(pressed.status).toBe(200);
    const applied = await stored(request.id);
    expect(applied.applyMode).toBe('suggestions');

    await runApplyJob(job!.id);

    const after = await stored(request.id);
    expect(after.applyError).toBeNull();
    expect(after.appliedAt).toEqual(applied.appliedAt);
    expect(after.appliedReviewId).toBe(applied.appliedReviewId);
    expect((await previewJson(request.id)).applyError).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.apply.completed' && line.jobId === job!.id,
    );
    expect(logged).toMatchObject({ status: 'skipped' });
  });

  it('hides the last error while a press applies', async () => {
    const request = await newRequest();
    const earlier = 'The apply was cancelled. Suspended in a test.';
    await setup.context.db.update(patchRequests).set({ applyError: earlier }).where(eq(patchRequests.id, request.id));
    expect((await previewJson(request.id)).applyError).toBe(earlier);
    expect(await previewPage(request.id)).toContain(earlier);
    let duringApply: { applyError: string | null; page: string } | undefined;
    pullRequestReads.set(async () => {
      duringApply = { applyError: (await previewJson(request.id)).applyError, page: await previewPage(request.id) };
    });

    const response = await requestApply(applyContext, request.id);

    expect(response.status).toBe(200);
    expect(duringApply).toBeDefined();
    expect(duringApply!.applyError).toBeNull();
    expect(duringApply!.page).not.toContain(earlier);
    expect((await stored(request.id)).applyError).toBeNull();
  });

  it('is cancelled by regenerating a file', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id)).status).toBe(202);
    const [job] = await applyJobs(request.id);
    const [file] = await setup.context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, request.id));

    const result = await regeneratePatchFile(setup.context.db, setup.context.boss, {
      userId: applyContext.user.id,
      patchRequestId: request.id,
      fileId: file!.id,
      // A platform key pays, because without a provider the regeneration is rejected.
      payment: await loadPreviewPayment(
        { ...setup.context, config: { ...setup.context.config, ...testPlatformKeys } },
        applyContext.user.id,
      ),
    });

    expect(result).toEqual({ ok: true, path: 'app.txt', generation: 1, cancelledApplyJobId: job!.id });
    expect((await setup.context.boss.getJobById(applyQueue, job!.id))!.state).toBe('cancelled');
    const stopped = await stored(request.id);
    expect(stopped.applyRateLimitedUntil).toBeNull();
    expect(stopped.applyError).toBe(
      'The apply that waited for a GitHub rate limit was cancelled, because app.txt was ' +
        'regenerated. Apply again once the preview is ready.',
    );
    const preview = await previewJson(request.id);
    expect(preview.rateLimitWait).toBeNull();
    expect(preview.applyError).toBe(stopped.applyError);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('waits out a claim held elsewhere', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id)).status).toBe(202);
    const [job] = await applyJobs(request.id);
    // A call, or an attempt of the job whose worker died, claimed the request 2 minutes ago.
    const claimedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 120_000);
    await setup.context.db.update(patchRequests).set({ applyStartedAt: claimedAt }).where(eq(patchRequests.id, request.id));
    const since = setup.fake.requests.length;

    await runApplyJob(job!.id);

    const jobs = await applyJobs(request.id);
    expect(jobs).toHaveLength(2);
    const next = jobs[1]!;
    expect(next.state).toBe('created');
    expect(new Date(next.start_after).getTime()).toBe(claimedAt.getTime() + 10 * 60_000 + 1000);
    expect(next.data.rateLimitedSince).toBe(job!.data.rateLimitedSince);
    const waiting = await stored(request.id);
    expect(waiting.applyJobId).toBe(next.id);
    expect(waiting.applyError).toBeNull();
    expect(waiting.appliedAt).toBeNull();
    expect(refUpdates(since)).toBe(0);
    const until = new Date(next.start_after).toISOString();
    expect(waiting.applyClaimWaitUntil?.toISOString()).toBe(until);
    const json = await previewJson(request.id);
    expect(json.otherApplyWait).toEqual({ job: applyQueue, until });
    expect(json.rateLimitWait).toBeNull();
    for (const page of [await previewPage(request.id), await runPageItem(request.id)]) {
      expect(page).toContain('Applying waits for another apply of this preview that started first.');
      expect(page).toContain(`datetime="${until}"`);
      expect(page).not.toContain('waits for a GitHub rate limit');
    }

    // The claim went stale without a result, so the next job applies.
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: new Date(Date.now() - 11 * 60_000) })
      .where(eq(patchRequests.id, request.id));
    await runApplyJob(next.id);

    const applied = await stored(request.id);
    expect(applied.appliedAt).not.toBeNull();
    expect(applied.applyError).toBeNull();
    expect(applied.applyClaimWaitUntil).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(applied.appliedCommitSha);
    expect(refUpdates(since)).toBe(1);
    expect((await previewJson(request.id)).otherApplyWait).toBeNull();
    expect(await runPageItem(request.id)).not.toContain('waits for another apply');
  });

  it('fails past the maximum wait', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id)).status).toBe(202);
    const [job] = await applyJobs(request.id);
    // As if the apply had been rate-limited since 50 minutes ago, and its limit lifts in 15.
    const data: ApplyJobData = { ...job!.data, rateLimitedSince: Date.now() - 50 * 60_000 };
    await setup.context.database.sql`
      UPDATE pgboss.job SET data = ${JSON.stringify(data)}::jsonb WHERE id = ${job!.id}`;
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 15 * 60));

    await runApplyJob(job!.id);

    expect((await applyJobs(request.id)).map((candidate) => candidate.id)).toEqual([job!.id]);
    expect((await setup.context.boss.getJobById(applyQueue, job!.id))!.state).toBe('completed');
    const failed = await stored(request.id);
    expect(failed.appliedAt).toBeNull();
    expect(failed.applyError).toMatch(
      /^GitHub rate-limited the installation until \S+, later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS \(3600 s\) after the first rate-limited response allows\. Try again after that time\.$/,
    );
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    expect((await previewJson(request.id)).applyError).toBe(failed.applyError);
    const page = await previewPage(request.id);
    expect(page).toContain('GitHub rate-limited the installation until');
    expect(page).not.toContain('waits for a GitHub rate limit');
  });

  it('lets a suspend cancel the waiting job', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id)).status).toBe(202);
    const [job] = await applyJobs(request.id);

    const cancelled = await setup.context.db.transaction((tx) =>
      cancelInstallationWork(tx, setup.context.boss, setup.installationId, 'Suspended in a test.'),
    );

    expect(cancelled.applies).toBe(1);
    expect((await setup.context.boss.getJobById(applyQueue, job!.id))!.state).toBe('cancelled');
    const stopped = await stored(request.id);
    expect(stopped.applyError).toBe('The apply was cancelled. Suspended in a test.');
    expect(stopped.status).toBe('ready');
    expect((await previewJson(request.id)).rateLimitWait).toBeNull();
  });

  it('queues nothing after its job is cancelled', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id)).status).toBe(202);
    const [job] = await applyJobs(request.id);
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));

    // A suspend cancels the running job, and an unsuspend follows before the rate limit.
    await runApplyJob(job!.id, async () => {
      await setup.context.db.transaction((tx) =>
        cancelInstallationWork(tx, setup.context.boss, setup.installationId, 'Suspended in a test.'),
      );
    });

    expect((await applyJobs(request.id)).map((candidate) => candidate.id)).toEqual([job!.id]);
    const stopped = await stored(request.id);
    expect(stopped.applyError).toBe('The apply was cancelled. Suspended in a test.');
    expect(stopped.appliedAt).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const logged = setup.context.logs.find(
      (line) => line.event === 'job.apply.rejected' && line.jobId === job!.id,
    );
    expect(logged?.reason).toContain(`because apply job ${job!.id} was cancelled`);
  });
});
