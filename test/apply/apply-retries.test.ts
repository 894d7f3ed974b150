// Applying when GitHub fails part-way: responses lost after a write, stale claims, concurrent
// applies, missing branches and malformed responses. A patch request is applied once or not at
// all, and every failure is a 4xx or 502 saying what to do.
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { installations, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { gitDataRoutes } from '../../src/demo/fakes/github/git-data.ts';
import { reviewRoutes } from '../../src/demo/fakes/github/reviews.ts';
import {
  createApplyTestContext,
  gitIn,
  headText,
  proposedText,
  queueBranchAt,
  readRefPattern,
  refPattern,
  requestApply,
  resetApplyRun,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import {
  insertReadyPatchRequest,
  insertUser,
  owner,
  prNumber,
  repo,
  repository,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { storeApplyJob } from '../helpers/apply-jobs.ts';
import { failAfterWork } from '../helpers/lost-response.ts';


let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let user: ApplyTestContext['user'];
let runId: string;

/**
 * Failure injected after the fake's own handler ran, so GitHub did the work but the client saw
 * an error, as happens when a response is lost or a proxy times out.
 */
const afterWork: { review: number; ref: number } = { review: 0, ref: 0 };

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);

function newRequest(status?: 'ready' | 'partially_ready' | 'failed') {
  return insertReadyPatchRequest(setup.context, {
    runId,
    userId: user.id,
    files: [{ path: 'app.txt', originalText: headText, proposedText }],
    status,
  });
}

function setInstallation(suspended = false) {
  setup.fake.setInstallation({
    id: setup.installationId,
    account: { login: owner, id: 1, type: 'Organization' },
    permissions: { checks: 'write', metadata: 'read', contents: 'write', pull_requests: 'write' },
    suspended,
  });
}

async function stored(id: string) {
  const [row] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  return row!;
}

/** Puts the request back as a call leaves it that applied it and died 11 minutes ago. */
async function markDiedAfterApply(id: string) {
  await setup.context.db
    .update(patchRequests)
    .set({
      appliedAt: null,
      applyMode: null,
      appliedCommitSha: null,
      appliedReviewId: null,
      applyStartedAt: new Date(Date.now() - 11 * 60_000),
    })
    .where(eq(patchRequests.id, id));
}

/**
 * Builds the 409 message for applying patch request `id` after a newer commit superseded its
 * run.
 */
function supersededMessage(id: string): string {
  return (
    `The pull request has a newer commit than ${setup.git.headSha}. Request a new preview on ` +
    `the newest run of the pull request and apply that one instead of patch request ${id}.`
  );
}

async function setRunStatus(status: 'completed' | 'superseded') {
  await setup.context.db.update(prRuns).set({ status }).where(eq(prRuns.id, runId));
}

beforeAll(async () => {
  applyContext = await createApplyTestContext();
  ({ setup, user, runId } = applyContext);

  const updateRef = gitDataRoutes.find((route) => route.method === 'PATCH')!;
  setup.fake.addRoute(failAfterWork(updateRef, afterWork, 'ref'));
  const createReview = reviewRoutes.find((route) => route.method === 'POST')!;
  setup.fake.addRoute(failAfterWork(createReview, afterWork, 'review'));
});

beforeEach(async () => {
  afterWork.review = 0;
  afterWork.ref = 0;
  await resetApplyRun(setup, runId);
  setInstallation();
  await setup.context.db
    .update(installations)
    .set({ suspendedAt: null, deletedAt: null })
    .where(eq(installations.id, setup.installationId));
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply, suggestions', () => {
  it('posts one review despite a 502', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    afterWork.review = 1;

    const response = await apply(request.id, { mode: 'suggestions' });

    // The POST is not repeated after the 502: the review GitHub created is found and kept.
    expect(response.status).toBe(200);
    const reviewPosts = setup.fake.requests.filter(
      (recorded) => recorded.method === 'POST' && recorded.path.endsWith(`/pulls/${prNumber}/reviews`),
    );
    expect(reviewPosts).toHaveLength(1);
    expect(setup.fake.reviews.length - reviewsBefore).toBe(1);
  }, 30_000);

  it('keeps a review created before every 502', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    afterWork.review = 10;

    const response = await apply(request.id, { mode: 'suggestions' });

    // The first attempt created the review and got a 502; it is not sent again, and the
    // review found on GitHub completes the apply.
    expect(response.status).toBe(200);
    expect(setup.fake.reviews.length - reviewsBefore).toBe(1);
    expect((await stored(request.id)).appliedAt).not.toBeNull();
  }, 60_000);

  it('posts one review after a stale claim is retaken', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const first = await apply(request.id, { mode: 'suggestions' });
    expect(first.status).toBe(200);
    // An apply that posted the review and died before recording it, 11 minutes ago.
    await markDiedAfterApply(request.id);

    const again = await apply(request.id, { mode: 'suggestions' });
    expect(again.status).toBe(200);
    expect(setup.fake.reviews.length - reviewsBefore).toBe(1);
  });
});

describe('apply, suggestions after a dead call', () => {
  it('records its review after the head moved', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const first = await apply(request.id, { mode: 'suggestions' });
    expect(first.status).toBe(200);
    const { reviewId } = await first.json();
    // The call died after posting, and the author then committed a suggestion on GitHub.
    await markDiedAfterApply(request.id);
    setup.fake.updatePullRequest(
      { owner, repo, number: prNumber },
      { headSha: setup.git.baseSha },
    );
    await setRunStatus('superseded');

    try {
      const again = await apply(request.id, { mode: 'suggestions' });
      expect(again.status).toBe(200);
      expect((await again.json()).reviewId).toBe(reviewId);
      expect(setup.fake.reviews.length - reviewsBefore).toBe(1);
      expect((await stored(request.id)).appliedReviewId).toBe(reviewId);
    } finally {
      await setRunStatus('completed');
    }
  });

  it('records dead review for commit', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const first = await apply(request.id, { mode: 'suggestions' });
    expect(first.status).toBe(200);
    const { reviewId } = await first.json();
    await markDiedAfterApply(request.id);

    const again = await apply(request.id, { mode: 'commit' });

    expect(again.status).toBe(200);
    const result = await again.json();
    expect(result.mode).toBe('suggestions');
    expect(result.reviewId).toBe(reviewId);
    expect(result.commitSha).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    expect(setup.fake.reviews.length - reviewsBefore).toBe(1);
    expect((await stored(request.id)).applyMode).toBe('suggestions');
  });

  it('rejects a moved head without a review', async () => {
    const request = await newRequest();
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: new Date(Date.now() - 11 * 60_000) })
      .where(eq(patchRequests.id, request.id));
    setup.fake.updatePullRequest(
      { owner, repo, number: prNumber },
      { headSha: setup.git.baseSha },
    );

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toContain('since the preview');
    expect((await stored(request.id)).applyStartedAt).toBeNull();
  });
});

describe('apply, commits', () => {
  it('recovers a ref update that returned 502', async () => {
    const request = await newRequest();
    afterWork.ref = 1;
    const response = await apply(request.id);

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
    expect((await stored(request.id)).appliedCommitSha).toBe(result.commitSha);
  });

  it('answers 502 when every blob request fails', async () => {
    const request = await newRequest();
    // One request and plugin-retry's three retries; a leftover queued response would fail later tests.
    for (let i = 0; i < 4; i++) {
      setup.fake.queueResponse({ method: 'POST', path: /\/git\/blobs$/, status: 503 });
    }
    const response = await apply(request.id);

    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(502);
    expect(body.error.message).toContain('GitHub failed or could not be reached. Wait a few minutes.');
    expect((await stored(request.id)).applyStartedAt).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  }, 60_000);

  it('makes one commit for a stale claim retaken', async () => {
    const request = await newRequest();
    const first = await apply(request.id);
    expect(first.status).toBe(200);
    const { commitSha } = await first.json();
    await markDiedAfterApply(request.id);

    const again = await apply(request.id);
    expect(again.status).toBe(200);
    expect((await again.json()).commitSha).toBe(commitSha);
    expect(await git('rev-parse', headBranch)).toBe(commitSha);
  });

  it('records a dead call commit after the push', async () => {
    const request = await newRequest();
    const first = await apply(request.id);
    expect(first.status).toBe(200);
    const { commitSha } = await first.json();
    // The call died after the push, and the push's synchronize event superseded the run.
    await markDiedAfterApply(request.id);
    await setRunStatus('superseded');

    try {
      const again = await apply(request.id);
      expect(again.status).toBe(200);
      expect((await again.json()).commitSha).toBe(commitSha);
      expect(await git('rev-parse', headBranch)).toBe(commitSha);
      expect((await stored(request.id)).appliedCommitSha).toBe(commitSha);
    } finally {
      await setRunStatus('completed');
    }
  });

  it('records dead commit for suggestions', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const first = await apply(request.id);
    expect(first.status).toBe(200);
    const { commitSha } = await first.json();
    await markDiedAfterApply(request.id);
    await setRunStatus('superseded');

    try {
      const again = await apply(request.id, { mode: 'suggestions' });

      const result = await again.json();
      expect(again.status, JSON.stringify(result)).toBe(200);
      expect(result.mode).toBe('commit');
      expect(result.commitSha).toBe(commitSha);
      expect(result.reviewId).toBeNull();
      expect(setup.fake.reviews.length - reviewsBefore).toBe(0);
      expect(await git('rev-parse', headBranch)).toBe(commitSha);
      expect((await stored(request.id)).appliedCommitSha).toBe(commitSha);
    } finally {
      await setRunStatus('completed');
    }
  });

  it('rejects a superseded run without a claim', async () => {
    const request = await newRequest();
    await setRunStatus('superseded');

    try {
      const response = await apply(request.id);
      expect(response.status).toBe(409);
      expect((await response.json()).error.message).toBe(supersededMessage(request.id));
      expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    } finally {
      await setRunStatus('completed');
    }
  });

  it('rejects a superseded run after a failed job', async () => {
    const request = await newRequest();
    // The job's last attempt failed before any push and stored its error.
    await storeApplyJob(setup.context, { id: request.id, userId: user.id }, 'failed');
    await setRunStatus('superseded');

    try {
      const response = await apply(request.id);
      expect(response.status).toBe(409);
      expect((await response.json()).error.message).toBe(supersededMessage(request.id));
      expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
      expect((await stored(request.id)).applyStartedAt).toBeNull();
    } finally {
      await setRunStatus('completed');
    }
  });

  it('records a commit while its job waits to retry', async () => {
    const request = await newRequest();
    const first = await apply(request.id);
    expect(first.status).toBe(200);
    const { commitSha } = await first.json();
    // An attempt of the apply job pushed the commit without recording it, and pg-boss retries
    // the job. Neither a claim nor an unconfirmed write is stored, so only the pending job lets
    // the apply go ahead on the superseded run.
    await markDiedAfterApply(request.id);
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: null })
      .where(eq(patchRequests.id, request.id));
    await storeApplyJob(setup.context, { id: request.id, userId: user.id }, 'retry');
    await setRunStatus('superseded');

    try {
      const again = await apply(request.id);
      const result = await again.json();
      expect(again.status, JSON.stringify(result)).toBe(200);
      expect(result.commitSha).toBe(commitSha);
      expect(await git('rev-parse', headBranch)).toBe(commitSha);
      expect((await stored(request.id)).appliedCommitSha).toBe(commitSha);
    } finally {
      await setRunStatus('completed');
    }
  });

  it('names when a held claim goes stale', async () => {
    const request = await newRequest();
    // Another call claimed the request three minutes ago and has not finished, or has died.
    const startedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 3 * 60_000);
    const staleAt = new Date(startedAt.getTime() + 10 * 60_000);
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: startedAt })
      .where(eq(patchRequests.id, request.id));

    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(
      `Patch request ${request.id} is being applied by another call since ` +
        `${startedAt.toISOString().slice(11, 19)} UTC. If that call died, apply again after ` +
        `${staleAt.toISOString().slice(11, 19)} UTC.`,
    );
    expect(error.applyStartedAt).toBe(startedAt.toISOString());
    expect(error.claimStaleAt).toBe(staleAt.toISOString());
    expect((await stored(request.id)).applyStartedAt?.toISOString()).toBe(startedAt.toISOString());
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('retakes a claim after the stated time', async () => {
    const request = await newRequest();
    // A claim that goes stale 1.5 s from now, between two whole seconds.
    const startedAt = new Date(Date.now() - 10 * 60_000 + 1_500);
    const staleAt = new Date(startedAt.getTime() + 10 * 60_000);
    const retryAt = new Date(Math.ceil(staleAt.getTime() / 1000) * 1000);
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: startedAt })
      .where(eq(patchRequests.id, request.id));

    const early = await apply(request.id);
    expect(early.status).toBe(409);
    const { error } = await early.json();
    expect(error.message).toContain(
      `If that call died, apply again after ${retryAt.toISOString().slice(11, 19)} UTC.`,
    );
    expect(error.claimStaleAt).toBe(staleAt.toISOString());
    await new Promise((resolve) => setTimeout(resolve, retryAt.getTime() - Date.now() + 50));
    const late = await apply(request.id);

    expect(late.status).toBe(200);
    expect(await git('rev-parse', headBranch)).toBe((await late.json()).commitSha);
  });

  it('makes one commit for two concurrent applies', async () => {
    const request = await newRequest();
    const responses = await Promise.all([apply(request.id), apply(request.id)]);
    const statuses = responses.map((response) => response.status).sort();
    const bodies = await Promise.all(responses.map((response) => response.json()));

    expect(statuses).toEqual([200, 409]);
    const winner = bodies.find((body) => body.commitSha)!;
    const loser = bodies.find((body) => body.error)!;
    expect(loser.error.message).toContain('is being applied by another call');
    expect(await git('rev-parse', headBranch)).toBe(winner.commitSha);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
  });

  it('rejects commit and suggestions applied at once', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const responses = await Promise.all([
      apply(request.id),
      apply(request.id, { mode: 'suggestions' }),
    ]);
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([200, 409]);
    const wroteCommit = (await git('rev-parse', headBranch)) !== setup.git.headSha;
    const wroteReview = setup.fake.reviews.length > reviewsBefore;
    expect(wroteCommit !== wroteReview).toBe(true);
  });

  it('answers 409 when the branch was deleted', async () => {
    const request = await newRequest();
    await git('update-ref', '-d', `refs/heads/${headBranch}`);
    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.message).toContain(`Branch ${headBranch} no longer exists`);
    expect((await stored(request.id)).applyStartedAt).toBeNull();
  });

  it('answers 502 when reading the ref fails after a 409 update', async () => {
    const request = await newRequest();
    // The read before the update finds the branch unmoved, and the read after it fails.
    queueBranchAt(setup, setup.git.headSha);
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 409 });
    setup.fake.queueResponse({ method: 'GET', path: readRefPattern, status: 404 });
    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.code).toBe('bad_gateway');
    const row = await stored(request.id);
    expect(row.applyStartedAt).toBeNull();
    expect(row.appliedAt).toBeNull();
  });

  it('answers 502 when GitHub returns a commit without a tree', async () => {
    const request = await newRequest();
    setup.fake.queueResponse({
      method: 'GET',
      path: `/repos/${repository}/git/commits/${setup.git.headSha}`,
      status: 200,
      body: { sha: setup.git.headSha },
    });
    const response = await apply(request.id);

    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(502);
    expect((await stored(request.id)).applyStartedAt).toBeNull();
  });

  it('answers 502 when GitHub returns HTML for the commit', async () => {
    const request = await newRequest();
    setup.fake.queueResponse({
      method: 'GET',
      path: `/repos/${repository}/git/commits/${setup.git.headSha}`,
      status: 200,
      headers: { 'content-type': 'text/html' },
      body: '<html>unicorn</html>',
    });
    const response = await apply(request.id);

    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(502);
    expect((await stored(request.id)).applyStartedAt).toBeNull();
  });
});

describe('apply, the installation', () => {
  it('answers 409 when suspended in the database', async () => {
    const request = await newRequest();
    await setup.context.db
      .update(installations)
      .set({ suspendedAt: new Date() })
      .where(eq(installations.id, setup.installationId));
    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.message).toContain('is suspended');
    expect((await stored(request.id)).applyStartedAt).toBeNull();
  });
});

describe('apply, request state', () => {
  const reasons = {
    failed: 'failed, so it has no file to apply; request a new preview',
    cancelled: 'was cancelled, so it has no file to apply; request a new preview',
    queued: 'is still queued; apply it once its preview is ready',
    running: 'is still running; apply it once its preview is ready',
  };
  for (const [status, reason] of Object.entries(reasons) as [keyof typeof reasons, string][]) {
    it(`answers 409 for a ${status} request`, async () => {
      const request = await newRequest();
      await setup.context.db
        .update(patchRequests)
        .set({ status })
        .where(eq(patchRequests.id, request.id));
      const response = await apply(request.id);

      expect(response.status).toBe(409);
      const { error } = await response.json();
      expect(error.message).toBe(`Patch request ${request.id} ${reason}.`);
      expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    });
  }

  it('answers 409 for the other mode after applying', async () => {
    const request = await newRequest();
    expect((await apply(request.id)).status).toBe(200);
    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.message).toContain('already applied as commit');
  });

  it('answers 400 for bad bodies', async () => {
    const request = await newRequest();
    for (const body of [[1], 'commit', { mode: 'force' }, null, { mode: 1 }]) {
      const response = await apply(request.id, body);
      expect(response.status, JSON.stringify(body)).toBe(400);
    }
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('answers 404 for another user', async () => {
    const request = await newRequest();
    const other = await insertUser(setup.context);
    const response = await applyContext.app.request(`/api/patch-requests/${request.id}/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${other.token}` },
    });
    expect(response.status).toBe(404);
  });
});
