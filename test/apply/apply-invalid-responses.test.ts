// Applying when GitHub returns a 2xx response that lacks or mistypes a field that Apply reads.
// Each such response gets 502, naming the request and the field. A response to a write that
// GitHub carried out does not hide the write: Apply reads the branch or the reviews to find it.
// An apply job stores such an error at once, without a retry.
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { patchRequests } from '../../src/db/schema/index.ts';
import type { QueuedResponse } from '../../src/demo/fakes/github.ts';
import { gitDataRoutes } from '../../src/demo/fakes/github/git-data.ts';
import { reviewRoutes } from '../../src/demo/fakes/github/reviews.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import {
  createApplyTestContext,
  gitIn,
  invalidResponseMessage,
  queueBranchAt,
  readRefPattern,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import {
  insertAppTextRequest,
  runApplyJob,
  storeApplyJob,
  storedPatchRequest,
} from '../helpers/apply-jobs.ts';
import { logsOf } from '../helpers/context.ts';
import { owner, prNumber, repo, repository, type GitHubTestContext } from '../helpers/github-context.ts';
import { failAfterWork } from '../helpers/lost-response.ts';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;

/** Writes that the fake carries out before it returns an invalid response in place of its own. */
const afterWork: { ref: number; review: number } = { ref: 0, review: 0 };
const htmlPage = {
  headers: { 'content-type': 'text/html' },
  body: '<html><body>Service Unavailable</body></html>',
};

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);
const reviewsPath = `/repos/${repository}/pulls/${prNumber}/reviews`;
/** The app's limit on one GitHub response in these tests, far above the fake's responses. */
const maxResponseBytes = 1024 * 1024;

const newRequest = () => insertAppTextRequest(applyContext);
const stored = (id: string) => storedPatchRequest(setup, id);

function queue(response: QueuedResponse) {
  setup.fake.queueResponse(response);
}

/** Checks that the request is unclaimed, unapplied and still ready, and the branch unchanged. */
async function expectNothingApplied(id: string) {
  expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  const row = await stored(id);
  expect(row.status).toBe('ready');
  expect(row.applyStartedAt).toBeNull();
  expect(row.appliedAt).toBeNull();
}

beforeAll(async () => {
  applyContext = await createApplyTestContext({ maxResponseBytes });
  setup = applyContext.setup;
  const updateRef = gitDataRoutes.find((route) => route.method === 'PATCH')!;
  setup.fake.addRoute(failAfterWork(updateRef, afterWork, 'ref', { status: 200, ...htmlPage }));
  const createReview = reviewRoutes.find((route) => route.method === 'POST')!;
  setup.fake.addRoute(failAfterWork(createReview, afterWork, 'review', { status: 200, body: {} }));
});

beforeEach(async () => {
  afterWork.ref = 0;
  afterWork.review = 0;
  await resetPullRequestHead(setup);
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply as a commit, invalid response', () => {
  interface Case {
    /** Queues the invalid response, and any response that leads to its request. */
    queueResponses(): void;
    /** The request as the message names it, and the response's status. */
    request(): { method: string; path: string; status: number };
    problem: string;
  }

  const cases: [string, Case][] = [
    [
      'parent commit read',
      {
        queueResponses: () =>
          queue({
            method: 'GET',
            path: `/repos/${repository}/git/commits/${setup.git.headSha}`,
            status: 200,
            body: { sha: setup.git.headSha, tree: { sha: 'not-a-sha' } },
          }),
        request: () => ({ method: 'GET', path: `/repos/${repository}/git/commits/${setup.git.headSha}`, status: 200 }),
        problem: 'tree.sha: expected a tree sha of 40 lowercase hex digits',
      },
    ],
    [
      'tree read',
      {
        queueResponses: () =>
          queue({
            method: 'GET',
            path: /\/git\/trees\/[0-9a-f]{40}$/,
            status: 200,
            body: {
              sha: 'a'.repeat(40),
              tree: [{ path: 'app.txt', type: 'blob', sha: 'b'.repeat(40) }],
              truncated: false,
            },
          }),
        request: () => ({ method: 'GET', path: `/repos/${repository}/git/trees/${headTreeSha}`, status: 200 }),
        problem: 'tree.0.mode: Invalid input: expected string, received undefined',
      },
    ],
    [
      'blob creation',
      {
        queueResponses: () =>
          queue({ method: 'POST', path: /\/git\/blobs$/, status: 201, body: { url: 'https://example.test/blob' } }),
        request: () => ({ method: 'POST', path: `/repos/${repository}/git/blobs`, status: 201 }),
        problem: 'sha: Invalid input: expected string, received undefined',
      },
    ],
    [
      'tree creation',
      {
        queueResponses: () => queue({ method: 'POST', path: /\/git\/trees$/, status: 201, body: { sha: 'abc' } }),
        request: () => ({ method: 'POST', path: `/repos/${repository}/git/trees`, status: 201 }),
        problem: 'sha: expected a tree sha of 40 lowercase hex digits',
      },
    ],
    [
      'commit creation',
      {
        queueResponses: () => queue({ method: 'POST', path: /\/git\/commits$/, status: 201, ...htmlPage }),
        request: () => ({ method: 'POST', path: `/repos/${repository}/git/commits`, status: 201 }),
        problem: 'body: Invalid input: expected object, received string',
      },
    ],
    [
      'branch read',
      {
        queueResponses: () =>
          queue({
            method: 'GET',
            path: readRefPattern,
            status: 200,
            body: { ref: `refs/heads/${headBranch}`, object: { type: 'commit' } },
          }),
        request: () => ({ method: 'GET', path: `/repos/${repository}/git/ref/heads/${headBranch}`, status: 200 }),
        problem: 'object.sha: Invalid input: expected string, received undefined',
      },
    ],
    [
      'tip commit read',
      {
        // The branch points to the base commit, so Apply reads that commit to compare it.
        queueResponses: () => {
          queueBranchAt(setup, setup.git.baseSha);
          queue({
            method: 'GET',
            path: `/repos/${repository}/git/commits/${setup.git.baseSha}`,
            status: 200,
            body: { sha: setup.git.baseSha, tree: { sha: 'c'.repeat(40) }, parents: 'none' },
          });
        },
        request: () => ({ method: 'GET', path: `/repos/${repository}/git/commits/${setup.git.baseSha}`, status: 200 }),
        problem: 'parents: Invalid input: expected array, received string',
      },
    ],
    [
      'ref update that GitHub did not carry out',
      {
        queueResponses: () => queue({ method: 'PATCH', path: refPattern, status: 200, body: { object: {} } }),
        request: () => ({ method: 'PATCH', path: `/repos/${repository}/git/refs/heads/${headBranch}`, status: 200 }),
        problem: 'object.sha: Invalid input: expected string, received undefined',
      },
    ],
  ];

  let headTreeSha: string;

  beforeAll(async () => {
    headTreeSha = await git('rev-parse', `${setup.git.headSha}^{tree}`);
  });

  it.each(cases)('answers 502 for the %s', async (_name, { queueResponses, request: describeRequest, problem }) => {
    const request = await newRequest();
    queueResponses();

    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    const { method, path, status } = describeRequest();
    expect(error.code).toBe('bad_gateway');
    expect(error.message).toBe(invalidResponseMessage(request.id, `${method} ${path}`, status, problem));
    expect(error.github).toEqual({ status, message: problem, method, path, invalidResponse: true });
    await expectNothingApplied(request.id);
  });

  it('rejects a ref update naming another commit', async () => {
    const request = await newRequest();
    queue({ method: 'PATCH', path: refPattern, status: 200, body: { object: { sha: setup.git.headSha } } });

    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.github.method).toBe('PATCH');
    expect(error.github.path).toBe(`/repos/${repository}/git/refs/heads/${headBranch}`);
    expect(error.github.message).toMatch(
      new RegExp(`^object\\.sha: expected the new commit [0-9a-f]{40}, received ${setup.git.headSha}$`),
    );
    await expectNothingApplied(request.id);
  });

  it('records a ref update that GitHub carried out', async () => {
    const request = await newRequest();
    afterWork.ref = 1;

    const response = await apply(request.id);

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(afterWork.ref).toBe(0);
    expect(result.mode).toBe('commit');
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
    const row = await stored(request.id);
    expect(row.appliedCommitSha).toBe(result.commitSha);
    expect(row.applyStartedAt).toBeNull();
  });
});

describe('apply as suggestions, invalid response', () => {
  it('answers 502 for the file list', async () => {
    const request = await newRequest();
    const filesPath = `/repos/${repository}/pulls/${prNumber}/files`;
    queue({ method: 'GET', path: filesPath, status: 200, ...htmlPage });

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(502);
    const { error } = await response.json();
    const problem = 'body: Invalid input: expected array, received string';
    expect(error.message).toBe(invalidResponseMessage(request.id, `GET ${filesPath}`, 200, problem));
    expect(error.github).toEqual({
      status: 200,
      message: problem,
      method: 'GET',
      path: filesPath,
      invalidResponse: true,
    });
    expect(setup.fake.reviews.filter((review) => review.body.includes(request.id))).toEqual([]);
    await expectNothingApplied(request.id);
  });

  it('answers 502 for the review list', async () => {
    const request = await newRequest();
    queue({
      method: 'GET',
      path: reviewsPath,
      status: 200,
      body: [{ id: 7, commit_id: setup.git.headSha, user: null }],
    });

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(502);
    const { error } = await response.json();
    const problem = '0.body: Invalid input: expected string, received undefined';
    expect(error.message).toBe(invalidResponseMessage(request.id, `GET ${reviewsPath}`, 200, problem));
    expect(error.github.path).toBe(reviewsPath);
    expect(setup.fake.reviews.filter((review) => review.body.includes(request.id))).toEqual([]);
    await expectNothingApplied(request.id);
  });

  it('answers 502 for a review that GitHub did not post', async () => {
    const request = await newRequest();
    queue({ method: 'POST', path: reviewsPath, status: 200, body: { state: 'COMMENTED' } });

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(502);
    const { error } = await response.json();
    const problem = 'id: Invalid input: expected number, received undefined';
    expect(error.message).toBe(invalidResponseMessage(request.id, `POST ${reviewsPath}`, 200, problem));
    expect(setup.fake.reviews.filter((review) => review.body.includes(request.id))).toEqual([]);
    await expectNothingApplied(request.id);
  });

  it('records a review that GitHub posted', async () => {
    const request = await newRequest();
    afterWork.review = 1;

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(afterWork.review).toBe(0);
    const posted = setup.fake.reviews.filter((review) => review.body.includes(request.id));
    expect(posted).toHaveLength(1);
    expect(result.reviewId).toBe(posted[0]!.id);
    expect((await stored(request.id)).appliedReviewId).toBe(posted[0]!.id);
  });

  it('answers 502 for the commit of a dead call', async () => {
    const request = await newRequest();
    // A call that claimed the request 11 minutes ago died, and the head moved since the preview,
    // so Apply reads the new head to find out whether that call pushed it.
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: new Date(Date.now() - 11 * 60_000) })
      .where(eq(patchRequests.id, request.id));
    setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { headSha: setup.git.baseSha });
    const commitPath = `/repos/${repository}/git/commits/${setup.git.baseSha}`;
    const identity = { name: 'octocat', email: 'octocat@example.com', date: '2024-06-01T09:00:00Z' };
    queue({
      method: 'GET',
      path: commitPath,
      status: 200,
      body: {
        sha: setup.git.baseSha,
        parents: [],
        message: 7,
        author: identity,
        committer: identity,
        verification: { verified: false, reason: 'unsigned', signature: null, payload: null },
      },
    });

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(502);
    const { error } = await response.json();
    const problem = 'message: Invalid input: expected string, received number';
    expect(error.message).toBe(invalidResponseMessage(request.id, `GET ${commitPath}`, 200, problem));
    await expectNothingApplied(request.id);
  });
});

describe('apply job, oversized response', () => {
  it('stores the error at once', async () => {
    const request = await newRequest();
    const jobId = await storeApplyJob(setup.context, request, 'created');
    const pullPath = `/repos/${repository}/pulls/${prNumber}`;
    const body = Buffer.alloc(maxResponseBytes + 1, ' ');
    queue({ method: 'GET', path: pullPath, status: 200, body });
    const rejectedBefore = logsOf(setup.context, 'job.apply.rejected').length;

    await runApplyJob(setup, jobId);

    const job = await setup.context.boss.getJobById('apply', jobId);
    expect(job?.state).toBe('completed');
    expect(job?.retryCount).toBe(0);
    const problem = 'the response is larger than the limit of 1048576 bytes (1 MiB)';
    const message = invalidResponseMessage(request.id, `GET ${pullPath}`, 200, problem);
    expect((await stored(request.id)).applyError).toBe(message);
    const rejected = logsOf(setup.context, 'job.apply.rejected').slice(rejectedBefore);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.reason).toBe(message);
    await expectNothingApplied(request.id);
  });
});
