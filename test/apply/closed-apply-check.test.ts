// The check that a close of the pull request starts for an apply that GitHub did not confirm.
// Applies are rejected while the pull request is closed, so this check settles the unconfirmed
// write once: it records the commit or review that GitHub has, and otherwise stores an outcome
// that replaces the warning. It only reads GitHub.
import { eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { primaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import {
  closedApplyCheckQueue,
  handleClosedApplyCheckJob,
  type ClosedApplyCheckJobData,
} from '../../src/jobs/closed-apply-check.ts';
import { recoverDeadJobs } from '../../src/jobs/recover-jobs.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  invalidBranchRead,
  queueBranchAt,
  readRefPattern,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { bindApplyJobHelpers } from '../helpers/apply-jobs.ts';
import {
  fakePullRequestEvent,
  owner,
  prNumber,
  repo,
  repository,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { logsOf } from '../helpers/context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { loseWriteResponses } from '../helpers/lost-response.ts';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let cookie: string;

const { newRequest, stored, previewPage, previewJson } = bindApplyJobHelpers(() => ({
  applyContext,
  cookie,
}));

/** Writes that the fake carries out before it returns 502 in place of its response. */
const afterWork: { ref: number; review: number } = { ref: 0, review: 0 };

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);
const reviewsPath = `/repos/${repository}/pulls/${prNumber}/reviews`;


/** Counts the requests that write to GitHub: commits, ref updates and reviews. */
function countWrites(): number {
  return setup.fake.requests.filter(
    (request) =>
      (request.method === 'POST' && /\/git\/commits$|\/pulls\/\d+\/reviews$/.test(request.path)) ||
      (request.method === 'PATCH' && refPattern.test(request.path)),
  ).length;
}

/**
 * Applies a new request in mode commit while GitHub returns 502 to the ref update and the read
 * after it fails. The fake moves the branch first when `pushed` is true. Returns the request and
 * the commit that the update named.
 */
async function applyUnconfirmedCommit(pushed: boolean) {
  const request = await newRequest();
  // The read before the update finds the previewed head, and the read after it fails.
  queueBranchAt(setup, setup.git.headSha);
  setup.fake.queueResponse(invalidBranchRead);
  if (pushed) {
    afterWork.ref = 1;
  } else {
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 502 });
  }
  expect((await apply(request.id)).status).toBe(502);
  const row = await stored(request.id);
  expect(row.applyUnconfirmedMode).toBe('commit');
  expect(row.applyUnconfirmedCommitSha).toMatch(/^[0-9a-f]{40}$/);
  const branchTip = await git('rev-parse', headBranch);
  expect(branchTip === row.applyUnconfirmedCommitSha).toBe(pushed);
  return { request, commitSha: row.applyUnconfirmedCommitSha!, unconfirmedAt: row.applyUnconfirmedAt! };
}

/** Closes the pull request on the fake and delivers the `closed` event with the current time. */
async function closePullRequest(): Promise<string> {
  const closedAt = new Date().toISOString();
  setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { state: 'closed', closedAt });
  const event = fakePullRequestEvent(setup, 'closed');
  event.pull_request.closed_at = closedAt;
  event.pull_request.updated_at = closedAt;
  return setup.context.db.transaction((tx) =>
    handlePullRequestEvent(tx, setup.context.boss, pullRequestPayload.parse(event)),
  );
}

/** Builds the expected `applyClosedCheck` of an unconfirmed commit, with any `checkedAt`. */
function closedCheck(outcome: 'not_found' | 'not_checked', commitSha: string, unconfirmedAt: Date) {
  return {
    outcome,
    mode: 'commit',
    commitSha,
    unconfirmedAt: unconfirmedAt.toISOString(),
    checkedAt: expect.any(String),
  };
}

/** Returns the check jobs of the patch request, oldest first. */
function checkJobs(patchRequestId: string) {
  return setup.context.database.sql<{ id: string; state: string; start_after: string }[]>`
    SELECT id, state, start_after FROM pgboss.job
    WHERE name = ${closedApplyCheckQueue} AND data->>'patchRequestId' = ${patchRequestId}
    ORDER BY created_on, id`;
}

/** Returns the id of the one check job of the patch request, which has not run. */
async function queuedCheck(patchRequestId: string): Promise<string> {
  const jobs = await checkJobs(patchRequestId);
  expect(jobs.map((job) => job.state)).toEqual(['created']);
  return jobs[0]!.id;
}

/** Returns the check jobs of the patch request with their data and retries, oldest first. */
function checkJobDetails(patchRequestId: string) {
  return setup.context.database.sql<
    { id: string; state: string; data: ClosedApplyCheckJobData; retry_count: number; retry_limit: number; start_after: string }[]
  >`
    SELECT id, state, data, retry_count, retry_limit, start_after FROM pgboss.job
    WHERE name = ${closedApplyCheckQueue} AND data->>'patchRequestId' = ${patchRequestId}
    ORDER BY created_on, id`;
}

/** Makes the next read of the head branch get a primary rate limit that resets `seconds` from now. */
function rateLimitBranchRead(seconds: number): number {
  const resetEpochSeconds = Math.floor(Date.now() / 1000) + seconds;
  setup.fake.queueResponse(primaryRateLimitError('GET', readRefPattern, resetEpochSeconds));
  return resetEpochSeconds;
}

/** Sets the retry limit of check job `jobId` to 0, so its next attempt is its last. */
async function makeLastAttempt(jobId: string): Promise<void> {
  await setup.context.database.sql`
    UPDATE pgboss.job SET retry_limit = 0 WHERE name = ${closedApplyCheckQueue} AND id = ${jobId}`;
}

function runCheck(jobId: string) {
  return runDueJob<ClosedApplyCheckJobData>(setup.context, closedApplyCheckQueue, jobId, (job) =>
    handleClosedApplyCheckJob(setup.context, job),
  );
}

async function jobState(jobId: string) {
  return (await setup.context.boss.getJobById(closedApplyCheckQueue, jobId))!.state;
}

beforeAll(async () => {
  applyContext = await createApplyTestContext();
  setup = applyContext.setup;
  const session = await createSession(setup.context.db, applyContext.user.id, 1);
  cookie = `fixwright_session=${session.token}`;
  loseWriteResponses(setup.fake, afterWork);
});

beforeEach(async () => {
  afterWork.ref = 0;
  afterWork.review = 0;
  await resetPullRequestHead(setup);
  await setup.context.db
    .update(prRuns)
    .set({ status: 'completed', prClosedAt: null, prReopenedAt: null, prUpdatedAt: null })
    .where(eq(prRuns.id, applyContext.runId));
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

describe('check of an unconfirmed apply after a close', () => {
  it('records a commit found after the close', async () => {
    const { request, commitSha } = await applyUnconfirmedCommit(true);

    const outcome = await closePullRequest();

    // The close queues a check for each request of the run that has an unconfirmed apply.
    expect(outcome).toMatch(/, queued \d+ check\(s\) of unconfirmed applies$/);
    const jobId = await queuedCheck(request.id);
    expect(await previewPage(request.id)).toContain(
      ', and reading the branch to check failed. The pull request is closed, so Fixwright checks ' +
        'GitHub once without writing: it records that commit if the branch or the pull request has it.',
    );
    const writesBefore = countWrites();

    await runCheck(jobId);

    expect(await jobState(jobId)).toBe('completed');
    expect(countWrites()).toBe(writesBefore);
    const row = await stored(request.id);
    expect(row.appliedAt).not.toBeNull();
    expect(row.applyMode).toBe('commit');
    expect(row.appliedCommitSha).toBe(commitSha);
    expect(row.applyUnconfirmedAt).toBeNull();
    expect(row.applyUnconfirmedCommitSha).toBeNull();
    expect(row.applyClosedCheck).toBeNull();
    const json = (await previewJson(request.id)) as unknown as Record<string, unknown>;
    expect(json.applied).toMatchObject({ mode: 'commit', commitSha });
    expect(json.applyUnconfirmed).toBeNull();
    expect(json.applyClosedCheck).toBeNull();
    const page = await previewPage(request.id);
    expect(page).toContain(`Applied as commit ${commitSha.slice(0, 7)} on the pull request`);
    expect(page).not.toContain('may have pushed');
  });

  it('finds the commit after the branch is deleted', async () => {
    const { request, commitSha } = await applyUnconfirmedCommit(true);
    await closePullRequest();
    // GitHub keeps a closed pull request's head after its branch is deleted, as after a merge.
    await git('update-ref', '-d', `refs/heads/${headBranch}`);
    const jobId = await queuedCheck(request.id);

    await runCheck(jobId);

    const row = await stored(request.id);
    expect(row.appliedCommitSha).toBe(commitSha);
    expect(row.applyUnconfirmedAt).toBeNull();
    const pullRequestReads = setup.fake.requests.filter(
      (sent) => sent.method === 'GET' && sent.path === `/repos/${repository}/pulls/${prNumber}`,
    );
    expect(pullRequestReads.length).toBeGreaterThan(0);
  });

  it('records a review found after the close', async () => {
    const request = await newRequest();
    afterWork.review = 1;
    // The check before the post finds no review, and the check after it fails.
    setup.fake.queueResponse({ method: 'GET', path: reviewsPath, status: 200, body: [] });
    setup.fake.queueResponse({ method: 'GET', path: reviewsPath, status: 200, body: [{ id: 7 }] });
    expect((await apply(request.id, { mode: 'suggestions' })).status).toBe(502);
    const posted = setup.fake.reviews.filter((review) => review.body.includes(request.id));
    expect(posted).toHaveLength(1);
    await closePullRequest();
    const jobId = await queuedCheck(request.id);
    const writesBefore = countWrites();

    await runCheck(jobId);

    expect(countWrites()).toBe(writesBefore);
    const row = await stored(request.id);
    expect(row.applyMode).toBe('suggestions');
    expect(row.appliedReviewId).toBe(posted[0]!.id);
    expect(row.applyUnconfirmedAt).toBeNull();
    expect(await previewPage(request.id)).toContain('Applied as review suggestions on the pull request');
  });

  it("takes no other user's review for the apply", async () => {
    const request = await newRequest();
    // GitHub did not create the review, but returned 502, and the check after it failed.
    setup.fake.queueResponse({ method: 'GET', path: reviewsPath, status: 200, body: [] });
    setup.fake.queueResponse({ method: 'POST', path: reviewsPath, status: 502 });
    setup.fake.queueResponse({ method: 'GET', path: reviewsPath, status: 200, body: [{ id: 7 }] });
    expect((await apply(request.id, { mode: 'suggestions' })).status).toBe(502);
    expect((await stored(request.id)).applyUnconfirmedMode).toBe('suggestions');
    setup.fake.addReview({
      owner,
      repo,
      pullNumber: prNumber,
      commitId: setup.git.headSha,
      body: `Fixwright suggests fixes in 1 file from patch request ${request.id}, previewed at x.`,
      user: 'mallory',
    });
    await closePullRequest();
    const jobId = await queuedCheck(request.id);

    await runCheck(jobId);

    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.appliedReviewId).toBeNull();
    expect(row.applyClosedCheck).toMatchObject({ outcome: 'not_found', mode: 'suggestions' });
  });

  it('replaces the warning when nothing was pushed', async () => {
    const { request, commitSha, unconfirmedAt } = await applyUnconfirmedCommit(false);
    await closePullRequest();
    const jobId = await queuedCheck(request.id);
    const writesBefore = countWrites();

    await runCheck(jobId);

    expect(await jobState(jobId)).toBe('completed');
    expect(countWrites()).toBe(writesBefore);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.applyUnconfirmedAt).toBeNull();
    expect(row.applyUnconfirmedMode).toBeNull();
    expect(row.applyUnconfirmedCommitSha).toBeNull();
    expect(row.applyClosedCheck).toEqual(closedCheck('not_found', commitSha, unconfirmedAt));
    const json = (await previewJson(request.id)) as unknown as Record<string, unknown>;
    expect(json.applyUnconfirmed).toBeNull();
    expect(json.applyClosedCheck).toEqual(JSON.parse(JSON.stringify(row.applyClosedCheck)));
    const page = await previewPage(request.id);
    expect(page).toContain(
      `Not applied: the last apply did not push commit ${commitSha.slice(0, 7)} to branch ` +
        `${headBranch}. GitHub did not confirm the update at`,
    );
    expect(page).toContain(
      ', and after the pull request closed, neither the branch nor the pull request contained the commit.',
    );
    expect(page).not.toContain('may have pushed');
  });

  it('records not checked after failed reads', async () => {
    const { request, commitSha, unconfirmedAt } = await applyUnconfirmedCommit(true);
    await closePullRequest();
    const jobId = await queuedCheck(request.id);
    const writesBefore = countWrites();

    // The first attempt and pg-boss's three retries each get an invalid branch read.
    for (let attempt = 0; attempt < 3; attempt++) {
      setup.fake.queueResponse(invalidBranchRead);
      await expect(runCheck(jobId)).rejects.toThrow('object.sha: Invalid input');
      expect(await jobState(jobId), `attempt ${attempt}`).toBe('retry');
      expect((await stored(request.id)).applyClosedCheck, `attempt ${attempt}`).toBeNull();
    }
    setup.fake.queueResponse(invalidBranchRead);
    await runCheck(jobId);

    expect(await jobState(jobId)).toBe('completed');
    expect(countWrites()).toBe(writesBefore);
    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.applyClosedCheck).toEqual(closedCheck('not_checked', commitSha, unconfirmedAt));
    // The write stays stored, so an apply after a reopen looks for it first.
    expect(row.applyUnconfirmedAt).toEqual(unconfirmedAt);
    expect(row.applyUnconfirmedCommitSha).toBe(commitSha);
    const json = (await previewJson(request.id)) as unknown as Record<string, unknown>;
    expect(json.applyClosedCheck).toMatchObject({ outcome: 'not_checked', commitSha });
    const page = await previewPage(request.id);
    expect(page).toContain(
      'Not confirmed: the pull request closed before Fixwright could check whether the last ' +
        `apply pushed commit ${commitSha.slice(0, 7)} to branch ${headBranch}, whose update ` +
        'GitHub did not confirm at',
    );
    expect(page).toContain(
      '. Reopen the pull request and apply again to check: the apply records that commit if the ' +
        'branch has it, and commits the fixes only if it does not.',
    );
    expect(page).not.toContain('may have pushed');

    // Reopened, the next apply finds the commit and writes nothing.
    setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { state: 'open', closedAt: null });
    await setup.context.db.update(prRuns).set({ prClosedAt: null }).where(eq(prRuns.id, applyContext.runId));
    const again = await apply(request.id);

    const result = await again.json();
    expect(again.status, JSON.stringify(result)).toBe(200);
    expect(result.commitSha).toBe(commitSha);
    expect(countWrites()).toBe(writesBefore);
    const applied = await stored(request.id);
    expect(applied.applyClosedCheck).toBeNull();
    expect(applied.applyUnconfirmedAt).toBeNull();
  });

  it('waits for a rate limit', async () => {
    const { request, commitSha } = await applyUnconfirmedCommit(true);
    await closePullRequest();
    const jobId = await queuedCheck(request.id);
    // The attempt is the job's last, and a rate limit leaves it a new job all the same.
    await makeLastAttempt(jobId);
    const resetEpochSeconds = rateLimitBranchRead(20 * 60);
    const startedAt = Date.now();

    await runCheck(jobId);

    expect(await jobState(jobId)).toBe('completed');
    const waiting = await stored(request.id);
    expect(waiting.applyClosedCheck).toBeNull();
    expect(waiting.applyUnconfirmedCommitSha).toBe(commitSha);
    const jobs = await checkJobDetails(request.id);
    expect(jobs.map((job) => job.state)).toEqual(['completed', 'created']);
    const next = jobs[1]!;
    expect(new Date(next.start_after).getTime()).toBe((resetEpochSeconds + 1) * 1000);
    expect(next.retry_count).toBe(0);
    expect(next.retry_limit).toBe(3);
    expect(next.data.rateLimitedSince).toBeGreaterThanOrEqual(startedAt);
    expect(next.data.rateLimitedSince).toBeLessThanOrEqual(Date.now());
    const [logged] = logsOf(setup.context, 'job.closed_apply_check.rate_limited', { jobId });
    expect(logged?.nextJobId).toBe(next.id);
    expect(logged?.liftsAt).toBe(new Date((resetEpochSeconds + 1) * 1000).toISOString());

    await runCheck(next.id);

    expect(await jobState(next.id)).toBe('completed');
    const row = await stored(request.id);
    expect(row.appliedCommitSha).toBe(commitSha);
    expect(row.applyUnconfirmedAt).toBeNull();
  });

  it('records not checked after a long rate limit', async () => {
    const { request, commitSha, unconfirmedAt } = await applyUnconfirmedCommit(true);
    await closePullRequest();
    const jobId = await queuedCheck(request.id);
    // GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS is 3600 by default.
    const resetEpochSeconds = rateLimitBranchRead(2 * 3600);

    await runCheck(jobId);

    expect(await jobState(jobId)).toBe('completed');
    expect((await checkJobs(request.id)).map((job) => job.state)).toEqual(['completed']);
    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.applyClosedCheck).toEqual(closedCheck('not_checked', commitSha, unconfirmedAt));
    expect(row.applyUnconfirmedCommitSha).toBe(commitSha);
    expect(logsOf(setup.context, 'job.closed_apply_check.rate_limit_too_long', { jobId })).toHaveLength(1);
    const [completed] = logsOf(setup.context, 'job.closed_apply_check.completed', { jobId });
    expect(completed?.status).toBe('not_checked');
    expect(completed?.reason).toBe(
      `GitHub rate-limited the installation until ${new Date((resetEpochSeconds + 1) * 1000).toISOString()}, ` +
        'later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS (3600 s) after the first rate-limited ' +
        'response allows. Try again after that time.',
    );
  });

  it('waits for an apply that still runs', async () => {
    const { request, commitSha } = await applyUnconfirmedCommit(true);
    // An apply that claimed the request before the close still runs.
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: sql`now()` })
      .where(eq(patchRequests.id, request.id));
    await closePullRequest();
    const jobId = await queuedCheck(request.id);

    await runCheck(jobId);

    const jobs = await checkJobs(request.id);
    expect(jobs.map((job) => job.state)).toEqual(['completed', 'created']);
    const waitMs = new Date(jobs[1]!.start_after).getTime() - Date.now();
    expect(waitMs).toBeGreaterThan(50_000);
    expect(waitMs).toBeLessThanOrEqual(60_000);
    const waiting = await stored(request.id);
    expect(waiting.appliedAt).toBeNull();
    expect(waiting.applyUnconfirmedCommitSha).toBe(commitSha);
    expect(waiting.applyStartedAt).not.toBeNull();

    // The apply ended without recording its commit.
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: null })
      .where(eq(patchRequests.id, request.id));
    await runCheck(jobs[1]!.id);

    const row = await stored(request.id);
    expect(row.appliedCommitSha).toBe(commitSha);
  });

  it('records not checked when its worker dies', async () => {
    const { request, commitSha } = await applyUnconfirmedCommit(true);
    await closePullRequest();
    const jobId = await queuedCheck(request.id);
    // The worker fetched the job on its last attempt a while ago and died without a lock.
    await makeLastAttempt(jobId);
    const fetched = await setup.context.boss.fetch(closedApplyCheckQueue, { batchSize: 10 });
    expect(fetched.map((job) => job.id)).toContain(jobId);
    await setup.context.database.sql`
      UPDATE pgboss.job SET started_on = now() - interval '2 minutes'
      WHERE name = ${closedApplyCheckQueue} AND id = ${jobId}`;

    const outcome = await recoverDeadJobs(setup.context, { minimumAgeSeconds: 60, confirmDelayMs: 20 });

    expect(outcome.failed).toBeGreaterThanOrEqual(1);
    expect(await jobState(jobId)).toBe('failed');
    const row = await stored(request.id);
    expect(row.applyClosedCheck).toMatchObject({ outcome: 'not_checked', commitSha });
    expect(row.applyUnconfirmedCommitSha).toBe(commitSha);
  });

  it('queues nothing without an unconfirmed apply', async () => {
    const request = await newRequest();

    await closePullRequest();

    expect(await checkJobs(request.id)).toEqual([]);
  });
});
