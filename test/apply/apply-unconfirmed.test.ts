// Applying when GitHub does not confirm the ref update or the review (a server error, no
// response or an invalid response) and the read that would check it fails too. The patch
// request keeps that outcome, the page and the API show it, and the next apply records the
// commit or review that GitHub has instead of writing it again.
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { primaryRateLimitError, type QueuedResponse } from '../../src/demo/fakes/github.ts';
import type { FakeResponse } from '../../src/demo/fakes/github/router.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { applyQueue } from '../../src/jobs/apply.ts';
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
import { logsOf } from '../helpers/context.ts';
import { prNumber, repository, type GitHubTestContext } from '../helpers/github-context.ts';
import { loseWriteResponses } from '../helpers/lost-response.ts';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let cookie: string;

const { newRequest, stored, applyJobs, runApplyJob, previewPage, previewJson } = bindApplyJobHelpers(() => ({
  applyContext,
  cookie,
}));

/** Writes that the fake carries out before it returns `writeFailure` in place of its response. */
const afterWork: { ref: number; review: number } = { ref: 0, review: 0 };
let writeFailure: FakeResponse = { status: 502, body: { message: 'Server Error' } };

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);
const refPath = `/repos/${repository}/git/refs/heads/${headBranch}`;
const readRefPath = `/repos/${repository}/git/ref/heads/${headBranch}`;
const reviewsPath = `/repos/${repository}/pulls/${prNumber}/reviews`;

const invalidBranchReadMessage =
  `GitHub returned an invalid response (status 200) to GET ${readRefPath}: object.sha: Invalid ` +
  'input: expected string, received undefined';

function count(method: string, path: RegExp): number {
  return setup.fake.requests.filter((request) => request.method === method && path.test(request.path)).length;
}

const refUpdates = () => count('PATCH', refPattern);
const commitsCreated = () => count('POST', /\/git\/commits$/);
const reviewPosts = () => count('POST', /\/pulls\/\d+\/reviews$/);

async function setRunStatus(status: 'completed' | 'superseded') {
  await setup.context.db.update(prRuns).set({ status }).where(eq(prRuns.id, applyContext.runId));
}

/**
 * Queues the branch read before the ref update, which finds the previewed head, and then
 * `readFailures`, which the read after the update gets.
 */
function failBranchReadAfterUpdate(...readFailures: QueuedResponse[]) {
  queueBranchAt(setup, setup.git.headSha);
  for (const failure of readFailures) setup.fake.queueResponse(failure);
}

/** Checks the stored outcome of an apply whose ref update to `commitSha` is unconfirmed. */
async function expectUnconfirmedCommit(id: string, commitSha: string) {
  const row = await stored(id);
  expect(row.applyStartedAt).toBeNull();
  expect(row.appliedAt).toBeNull();
  expect(row.appliedCommitSha).toBeNull();
  expect(row.applyUnconfirmedAt).not.toBeNull();
  expect(row.applyUnconfirmedMode).toBe('commit');
  expect(row.applyUnconfirmedCommitSha).toBe(commitSha);
  return row;
}

/**
 * Applies a new request while the fake moves the branch and returns 502 to the update, and the
 * read after it fails. Returns the request, the unrecorded commit and the stored row.
 */
async function applyUnconfirmedCommit() {
  const request = await newRequest();
  afterWork.ref = 1;
  failBranchReadAfterUpdate(invalidBranchRead);
  expect((await apply(request.id)).status).toBe(502);
  const pushed = await git('rev-parse', headBranch);
  const row = await expectUnconfirmedCommit(request.id, pushed);
  return { request, pushed, row };
}

beforeAll(async () => {
  applyContext = await createApplyTestContext();
  setup = applyContext.setup;
  const session = await createSession(setup.context.db, applyContext.user.id, 1);
  cookie = `fixwright_session=${session.token}`;
  loseWriteResponses(setup.fake, afterWork, () => writeFailure);
});

beforeEach(async () => {
  afterWork.ref = 0;
  afterWork.review = 0;
  writeFailure = { status: 502, body: { message: 'Server Error' } };
  await resetPullRequestHead(setup);
  await setRunStatus('completed');
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply, unconfirmed ref update', () => {
  const writeFailures: [string, FakeResponse, RegExp][] = [
    ['a 502', { status: 502, body: { message: 'Server Error' } }, /^GitHub returned 502 "Server Error" for PATCH /],
    ['no response', { status: 200, dropConnection: true }, /^GitHub did not respond to PATCH /],
    [
      'an invalid response',
      { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>Bad gateway</html>' },
      /^GitHub returned an invalid response \(status 200\) to PATCH /,
    ],
  ];

  it.each(writeFailures)('keeps the outcome after %s', async (_name, failure, writeMessage) => {
    const request = await newRequest();
    writeFailure = failure;
    afterWork.ref = 1;
    failBranchReadAfterUpdate(invalidBranchRead);
    const updatesBefore = refUpdates();

    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(afterWork.ref).toBe(0);
    expect(refUpdates()).toBe(updatesBefore + 1);
    // The fake moved the branch, so the commit is on GitHub without being recorded.
    const pushed = await git('rev-parse', headBranch);
    expect(pushed).not.toBe(setup.git.headSha);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
    expect(error.code).toBe('bad_gateway');
    expect(error.message).toMatch(writeMessage);
    expect(error.message).toContain(refPath);
    expect(error.message).toContain(
      `, so the branch may have moved to commit ${pushed}. Reading the branch to check failed: ` +
        `${invalidBranchReadMessage}. Patch request ${request.id} may have been applied. Apply it ` +
        'again once GitHub responds: the apply records that commit if the branch has it, and ' +
        'commits the fixes only if it does not.',
    );
    expect(error.applyUnconfirmed).toEqual({ mode: 'commit', commitSha: pushed });
    expect(error.github.method).toBe('PATCH');
    expect(error.github.path).toBe(refPath);
    expect(error.confirmingRead).toEqual({
      status: 200,
      method: 'GET',
      path: readRefPath,
      message: 'object.sha: Invalid input: expected string, received undefined',
      invalidResponse: true,
    });
    const row = await expectUnconfirmedCommit(request.id, pushed);

    const json = (await previewJson(request.id)) as unknown as Record<string, unknown>;
    expect(json.applied).toBeNull();
    expect(json.applyUnconfirmed).toEqual({
      mode: 'commit',
      at: row.applyUnconfirmedAt!.toISOString(),
      commitSha: pushed,
    });

    // The push's synchronize event supersedes the run. Apply stays enabled, because applying
    // again records the commit, and the files can no longer be regenerated.
    await setRunStatus('superseded');
    const page = await previewPage(request.id);
    expect(page).toContain(
      `The last apply may have pushed commit ${pushed.slice(0, 7)} to branch ${headBranch}: ` +
        'GitHub did not confirm the update at',
    );
    expect(page).toContain(
      ', and reading the branch to check failed. Apply again to check: the apply records that ' +
        'commit if the branch has it, and commits the fixes only if it does not.',
    );
    expect(page).not.toContain('The waiting apply job checks');
    expect(page).toContain(`datetime="${row.applyUnconfirmedAt!.toISOString()}"`);
    expect(page).toMatch(/<button type="submit" class="primary">\s*Apply/);
    expect(page).not.toContain('Regenerate this file');

    const commitsBefore = commitsCreated();
    const again = await apply(request.id);

    const result = await again.json();
    expect(again.status, JSON.stringify(result)).toBe(200);
    expect(result.mode).toBe('commit');
    expect(result.commitSha).toBe(pushed);
    expect(result.alreadyApplied).toBe(false);
    expect(refUpdates()).toBe(updatesBefore + 1);
    expect(commitsCreated()).toBe(commitsBefore);
    expect(await git('rev-parse', headBranch)).toBe(pushed);
    const applied = await stored(request.id);
    expect(applied.appliedCommitSha).toBe(pushed);
    expect(applied.applyUnconfirmedAt).toBeNull();
    expect(applied.applyUnconfirmedMode).toBeNull();
    expect(applied.applyUnconfirmedCommitSha).toBeNull();
    const appliedJson = (await previewJson(request.id)) as unknown as Record<string, unknown>;
    expect(appliedJson.applyUnconfirmed).toBeNull();
    expect(await previewPage(request.id)).not.toContain('may have pushed');
  });

  it('keeps the outcome when every read gets no response', async () => {
    const request = await newRequest();
    afterWork.ref = 1;
    // The first read and Octokit's three retries of it, 1, 4 and 9 s apart.
    const dropped: QueuedResponse = { method: 'GET', path: readRefPattern, status: 200, dropConnection: true };
    failBranchReadAfterUpdate(dropped, dropped, dropped, dropped);
    const readsBefore = count('GET', readRefPattern);

    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    const pushed = await git('rev-parse', headBranch);
    expect(count('GET', readRefPattern)).toBe(readsBefore + 5);
    expect(error.message).toContain(
      `GitHub returned 502 "Server Error" for PATCH ${refPath}, so the branch may have moved to ` +
        `commit ${pushed}. Reading the branch to check failed: GitHub did not respond to GET ${readRefPath}:`,
    );
    expect(error.confirmingRead).toMatchObject({ status: 500, method: 'GET', path: readRefPath, noResponse: true });
    await expectUnconfirmedCommit(request.id, pushed);

    const updatesBefore = refUpdates();
    const again = await apply(request.id);

    expect(again.status).toBe(200);
    expect((await again.json()).commitSha).toBe(pushed);
    expect(refUpdates()).toBe(updatesBefore);
  }, 60_000);

  it('records the commit below a later push', async () => {
    const { request, pushed } = await applyUnconfirmedCommit();
    // The author pushed on top of the unrecorded commit, which superseded the run.
    const later = await commitOnBranch(setup.git.dir, headBranch, { 'other.txt': 'later\n' });
    await setRunStatus('superseded');
    const updatesBefore = refUpdates();

    const again = await apply(request.id);

    const result = await again.json();
    expect(again.status, JSON.stringify(result)).toBe(200);
    expect(result.commitSha).toBe(pushed);
    expect(refUpdates()).toBe(updatesBefore);
    expect(await git('rev-parse', headBranch)).toBe(later);
    expect((await stored(request.id)).appliedCommitSha).toBe(pushed);
  });

  it('keeps the outcome when the check fails', async () => {
    const { request, pushed, row: unconfirmed } = await applyUnconfirmedCommit();
    // The next apply reads the branch to look for the commit, and that read fails too.
    setup.fake.queueResponse(invalidBranchRead);
    const updatesBefore = refUpdates();
    const commitsBefore = commitsCreated();

    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.code).toBe('bad_gateway');
    expect(error.message).toBe(
      `An earlier apply may have pushed commit ${pushed}, which GitHub did not confirm. Reading ` +
        `the branch to check failed: ${invalidBranchReadMessage}. Patch request ${request.id} may ` +
        'have been applied. Apply it again once GitHub responds: the apply records that commit if ' +
        'the branch has it, and commits the fixes only if it does not.',
    );
    expect(error.github).toBeUndefined();
    expect(error.confirmingRead.invalidResponse).toBe(true);
    expect(refUpdates()).toBe(updatesBefore);
    expect(commitsCreated()).toBe(commitsBefore);
    const row = await expectUnconfirmedCommit(request.id, pushed);
    expect(row.applyUnconfirmedAt).toEqual(unconfirmed.applyUnconfirmedAt);

    const again = await apply(request.id);

    expect(again.status).toBe(200);
    expect((await again.json()).commitSha).toBe(pushed);
    expect(refUpdates()).toBe(updatesBefore);
  });

  it('commits once when the update did not happen', async () => {
    const request = await newRequest();
    // The fake returns 502 without updating the branch, and the read after it fails.
    failBranchReadAfterUpdate(invalidBranchRead);
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 502 });
    const updatesBefore = refUpdates();

    expect((await apply(request.id)).status).toBe(502);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const unconfirmedSha = (await stored(request.id)).applyUnconfirmedCommitSha;
    expect(unconfirmedSha).toMatch(/^[0-9a-f]{40}$/);

    const again = await apply(request.id);

    const result = await again.json();
    expect(again.status, JSON.stringify(result)).toBe(200);
    expect(refUpdates()).toBe(updatesBefore + 2);
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
    const applied = await stored(request.id);
    expect(applied.appliedCommitSha).toBe(result.commitSha);
    expect(applied.applyUnconfirmedAt).toBeNull();
  });

  it('clears the outcome when nothing was pushed', async () => {
    const request = await newRequest();
    failBranchReadAfterUpdate(invalidBranchRead);
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 502 });
    expect((await apply(request.id)).status).toBe(502);
    expect((await stored(request.id)).applyUnconfirmedAt).not.toBeNull();
    // The next apply finds the branch without the commit, then GitHub rejects its own update.
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 403 });

    const again = await apply(request.id);

    expect(again.status).toBe(502);
    const row = await stored(request.id);
    expect(row.applyUnconfirmedAt).toBeNull();
    expect(row.applyUnconfirmedCommitSha).toBeNull();
    expect(row.applyStartedAt).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('keeps a rejected update without an outcome', async () => {
    const request = await newRequest();
    // GitHub rejected the update with 409, so the failed read leaves nothing unknown.
    failBranchReadAfterUpdate(invalidBranchRead);
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 409 });

    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.applyUnconfirmed).toBeUndefined();
    expect(error.github.method).toBe('GET');
    expect((await stored(request.id)).applyUnconfirmedAt).toBeNull();
  });
});

describe('apply, unconfirmed review', () => {
  it('records the review instead of posting again', async () => {
    const request = await newRequest();
    afterWork.review = 1;
    // The check before the post finds no review, and the check after it fails.
    setup.fake.queueResponse({ method: 'GET', path: reviewsPath, status: 200, body: [] });
    setup.fake.queueResponse({ method: 'GET', path: reviewsPath, status: 200, body: [{ id: 7 }] });
    const postsBefore = reviewPosts();

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(reviewPosts()).toBe(postsBefore + 1);
    const posted = setup.fake.reviews.filter((review) => review.body.includes(request.id));
    expect(posted).toHaveLength(1);
    expect(error.message).toBe(
      `GitHub returned 502 "Server Error" for POST ${reviewsPath}, so GitHub may have posted the ` +
        "review. Reading the pull request's reviews to check failed: GitHub returned an invalid " +
        `response (status 200) to GET ${reviewsPath}: 0.body: Invalid input: expected string, ` +
        'received undefined; 0.commit_id: Invalid input: expected string, received undefined; ' +
        '0.user: Invalid input: expected object, received undefined. ' +
        `Patch request ${request.id} may have been applied. Apply it again once GitHub responds: ` +
        'the apply records that review if the pull request has it, and posts the review only if it does not.',
    );
    expect(error.applyUnconfirmed).toEqual({ mode: 'suggestions', commitSha: null });
    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.applyUnconfirmedMode).toBe('suggestions');
    expect(row.applyUnconfirmedCommitSha).toBeNull();
    const json = (await previewJson(request.id)) as unknown as Record<string, unknown>;
    expect(json.applyUnconfirmed).toEqual({
      mode: 'suggestions',
      at: row.applyUnconfirmedAt!.toISOString(),
      commitSha: null,
    });
    expect(await previewPage(request.id)).toContain(
      'The last apply may have posted the review suggestions: GitHub did not confirm the review at',
    );

    // Without a mode the pull request makes commit the default, and the review decides.
    const again = await apply(request.id);

    const result = await again.json();
    expect(again.status, JSON.stringify(result)).toBe(200);
    expect(result.mode).toBe('suggestions');
    expect(result.reviewId).toBe(posted[0]!.id);
    expect(reviewPosts()).toBe(postsBefore + 1);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const applied = await stored(request.id);
    expect(applied.appliedReviewId).toBe(posted[0]!.id);
    expect(applied.applyUnconfirmedAt).toBeNull();
  });
});

describe('apply job, unconfirmed ref update', () => {
  it('retries and records the commit', async () => {
    const request = await newRequest();
    const resetSeconds = Math.floor(Date.now() / 1000) + 20 * 60;
    setup.fake.queueResponse(primaryRateLimitError('PATCH', refPattern, resetSeconds));
    expect((await apply(request.id)).status).toBe(202);
    const [job] = await applyJobs(request.id);
    afterWork.ref = 1;
    failBranchReadAfterUpdate(invalidBranchRead);
    const updatesBefore = refUpdates();
    const commitsBefore = commitsCreated();

    await expect(runApplyJob(job!.id)).rejects.toThrow('may have been applied');

    expect((await setup.context.boss.getJobById(applyQueue, job!.id))!.state).toBe('retry');
    // The failure line and pg-boss's stored error name the read that checked the update.
    const [failed] = logsOf(setup.context, 'job.apply.failed', { jobId: job!.id });
    expect(failed?.finalAttempt).toBe(false);
    expect(failed?.err).toMatchObject({ type: 'ApplyUnconfirmedError', request: `GET ${readRefPath}` });
    const [jobRow] = await setup.context.database.sql<{ output: Record<string, unknown> }[]>`
      SELECT output FROM pgboss.job WHERE name = ${applyQueue} AND id = ${job!.id}`;
    expect(jobRow!.output.request).toBe(`GET ${readRefPath}`);
    expect(JSON.stringify(jobRow!.output)).not.toMatch(/ghs_|authorization/i);
    const pushed = await git('rev-parse', headBranch);
    const row = await expectUnconfirmedCommit(request.id, pushed);
    expect(row.applyError).toBeNull();
    expect(refUpdates()).toBe(updatesBefore + 1);

    await runApplyJob(job!.id);

    expect((await setup.context.boss.getJobById(applyQueue, job!.id))!.state).toBe('completed');
    expect(refUpdates()).toBe(updatesBefore + 1);
    expect(commitsCreated()).toBe(commitsBefore + 1);
    const applied = await stored(request.id);
    expect(applied.appliedCommitSha).toBe(pushed);
    expect(applied.applyUnconfirmedAt).toBeNull();
    expect(applied.applyError).toBeNull();
  });
});
