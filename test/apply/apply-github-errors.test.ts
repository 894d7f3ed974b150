import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { patchRequests } from '../../src/db/schema/index.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import {
  createApplyTestContext,
  gitIn,
  headText,
  proposedText,
  queueBranchAt,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import {
  insertReadyPatchRequest,
  owner,
  prNumber,
  repository,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

const refPath = `/repos/${repository}/git/refs/heads/${headBranch}`;
const permissionStep =
  'The GitHub App lacks a permission that applying needs. Grant Contents: write and Pull ' +
  'requests: write in the GitHub App settings, and have an owner of the account accept the ' +
  'new permissions.';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let user: ApplyTestContext['user'];
let runId: string;

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);

function newRequest(path = 'app.txt') {
  return insertReadyPatchRequest(setup.context, {
    runId,
    userId: user.id,
    files: [{ path, originalText: headText, proposedText }],
  });
}

function setPermissions(permissions: Record<string, 'read' | 'write'>) {
  setup.fake.setInstallation({
    id: setup.installationId,
    account: { login: owner, id: 1, type: 'Organization' },
    permissions: { checks: 'write', metadata: 'read', ...permissions },
  });
}

function notApplied(id: string) {
  return `Patch request ${id} was not applied, so you can apply it again after that.`;
}

function countRequests(method: string, path: RegExp): number {
  return setup.fake.requests.filter(
    (request) => request.method === method && path.test(request.path),
  ).length;
}

/** Checks that the request can be applied again: unclaimed, unapplied, still ready. */
async function expectRetryable(id: string) {
  const [stored] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  expect(stored!.status).toBe('ready');
  expect(stored!.appliedAt).toBeNull();
  expect(stored!.applyStartedAt).toBeNull();
  expect(stored!.applyMode).toBeNull();
  expect(stored!.appliedCommitSha).toBeNull();
}

beforeAll(async () => {
  applyContext = await createApplyTestContext();
  ({ setup, user, runId } = applyContext);
});

beforeEach(async () => {
  await resetPullRequestHead(setup);
  setPermissions({ contents: 'write', pull_requests: 'write' });
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply when GitHub rejects the commit', () => {
  it('answers 502 without Contents: write', async () => {
    setPermissions({ contents: 'read', pull_requests: 'write' });
    const request = await newRequest();
    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.code).toBe('bad_gateway');
    expect(error.message).toBe(
      'GitHub returned 403 "Resource not accessible by integration" for POST ' +
        `/repos/${repository}/git/blobs. ${permissionStep} ${notApplied(request.id)}`,
    );
    expect(error.github).toEqual({
      status: 403,
      message: 'Resource not accessible by integration',
      method: 'POST',
      path: `/repos/${repository}/git/blobs`,
    });
    expect(error.requestId).toEqual(expect.any(String));
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    await expectRetryable(request.id);
  });

  it('applies after the permission is granted', async () => {
    setPermissions({ contents: 'read', pull_requests: 'write' });
    const request = await newRequest();
    expect((await apply(request.id)).status).toBe(502);

    setPermissions({ contents: 'write', pull_requests: 'write' });
    const response = await apply(request.id);

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(result.alreadyApplied).toBe(false);
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
    expect(await git('log', '-1', '--format=%s', result.commitSha)).toBe(
      'Apply Fixwright fixes to 1 file',
    );
  });

  it('answers 502 when the ref update gets 403', async () => {
    const request = await newRequest();
    setup.fake.queueResponse({
      method: 'PATCH',
      path: refPattern,
      status: 403,
      body: {
        message: 'Resource not accessible by integration',
        documentation_url: 'https://docs.github.com/rest/git/refs#update-a-reference',
        status: '403',
      },
    });
    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.message).toBe(
      `GitHub returned 403 "Resource not accessible by integration" for PATCH ${refPath}. ` +
        `${permissionStep} ${notApplied(request.id)}`,
    );
    // The new commit exists on GitHub, but no branch points to it.
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    await expectRetryable(request.id);

    const again = await apply(request.id);
    expect(again.status).toBe(200);
    expect(await git('rev-parse', headBranch)).toBe((await again.json()).commitSha);
  });

  it('answers 502 when the previewed commit is not found', async () => {
    const request = await newRequest();
    const path = `/repos/${repository}/git/commits/${setup.git.headSha}`;
    const blobsBefore = countRequests('POST', /\/git\/blobs$/);
    setup.fake.queueResponse({ method: 'GET', path, status: 404 });
    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.code).toBe('bad_gateway');
    expect(error.message).toBe(
      `GitHub returned 404 "Not Found" for GET ${path}. The app can no longer read ` +
        `${repository}, its branch or the previewed commit ${setup.git.headSha}. Check that ` +
        `the installation still includes ${repository}, then re-run the preview on the pull ` +
        `request's current head. ${notApplied(request.id)}`,
    );
    expect(countRequests('POST', /\/git\/blobs$/)).toBe(blobsBefore);
    await expectRetryable(request.id);
  });

  it('answers 409 when a 409 ref update follows a push', async () => {
    const moved = await commitOnBranch(setup.git.dir, headBranch, { 'other.txt': 'pushed\n' });
    const request = await newRequest();
    const updatesBefore = countRequests('PATCH', refPattern);
    // The push lands after the apply read the branch and before it updates it.
    queueBranchAt(setup, setup.git.headSha);
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 409 });
    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(
      `Branch ${headBranch} moved from ${setup.git.headSha} to ${moved} since the preview. ` +
        'Request a new preview on the newest run of the pull request and apply that one ' +
        `instead of patch request ${request.id}.`,
    );
    expect(countRequests('PATCH', refPattern)).toBe(updatesBefore + 1);
    expect(await git('rev-parse', headBranch)).toBe(moved);
    await expectRetryable(request.id);
  });

  it('answers 502 when a 409 ref update leaves the branch', async () => {
    const request = await newRequest();
    const updatesBefore = countRequests('PATCH', refPattern);
    setup.fake.queueResponse({ method: 'PATCH', path: refPattern, status: 409 });
    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.message).toBe(
      `GitHub returned 409 "Conflict" for PATCH ${refPath}. GitHub reported a conflict on its ` +
        `side. Wait a minute. ${notApplied(request.id)}`,
    );
    // Octokit does not retry the update, because the ref shows whether it happened.
    expect(countRequests('PATCH', refPattern)).toBe(updatesBefore + 1);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    await expectRetryable(request.id);
  });

  it('answers 502 naming a protected branch for a 422', async () => {
    const request = await newRequest();
    setup.fake.queueResponse({
      method: 'PATCH',
      path: refPattern,
      status: 422,
      body: {
        message: `Protected branch update failed for refs/heads/${headBranch}.`,
        documentation_url: 'https://docs.github.com/rest/git/refs#update-a-reference',
        status: '422',
      },
    });
    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.message).toBe(
      `GitHub returned 422 "Protected branch update failed for refs/heads/${headBranch}." for ` +
        `PATCH ${refPath}. GitHub did not accept the commit, for example because the branch is ` +
        "protected. Re-run the preview on the pull request's current head, or apply with " +
        `{"mode": "suggestions"} to post the fixes as a review. ${notApplied(request.id)}`,
    );
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    await expectRetryable(request.id);
  });

  it('answers 409 for a file missing at the previewed commit', async () => {
    const request = await newRequest('gone.txt');
    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(
      'gone.txt does not exist at the previewed commit; regenerate the preview.',
    );
    await expectRetryable(request.id);
  });
});

describe('apply as suggestions when GitHub rejects the review', () => {
  it('answers 502 without Pull requests: write', async () => {
    setPermissions({ contents: 'write', pull_requests: 'read' });
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.message).toBe(
      'GitHub returned 403 "Resource not accessible by integration" for POST ' +
        `/repos/${repository}/pulls/${prNumber}/reviews. ${permissionStep} ${notApplied(request.id)}`,
    );
    expect(setup.fake.reviews).toHaveLength(reviewsBefore);
    await expectRetryable(request.id);
  });
});

describe('apply as suggestions when GitHub rejects the lines', () => {
  it('answers 502 naming the rejected lines', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const reason =
      'Pull request review thread line must be part of the diff, Pull request review thread ' +
      "start line must be part of the same hunk as the line., and Pull request review thread " +
      "diff hunk can't be blank";
    // The body GitHub sends for review comments outside the diff, as public issue reports
    // quote it.
    setup.fake.queueResponse({
      method: 'POST',
      path: '/repos/:owner/:repo/pulls/:pull_number/reviews',
      status: 422,
      body: {
        message: 'Unprocessable Entity',
        errors: [reason],
        documentation_url:
          'https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request',
        status: '422',
      },
    });
    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.message).toContain(`returned 422 "Unprocessable Entity: ${reason}" for POST`);
    expect(error.github.message).toBe(`Unprocessable Entity: ${reason}`);
    expect(setup.fake.reviews).toHaveLength(reviewsBefore);
    await expectRetryable(request.id);
  });
});
