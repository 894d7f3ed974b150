// Applying reads the pull request from GitHub before it writes, because the stored run can be
// out of date. The pull request may have been closed, merged or left without its fork after
// the last webhook, or the run may store the base repository as the head of a deleted fork.
import { count, eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  patchRequests,
  prRuns,
  tokenEvents,
  tokenReservations,
} from '../../src/db/schema/index.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import { confirmPullRequestQueue } from '../../src/jobs/confirm-pull-request-queue.ts';
import {
  countApplyWrites,
  createApplyTestContext,
  expectNothingApplied,
  gitIn,
  headText,
  proposedText,
  requestApply,
  resetApplyRun,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import {
  insertFindings,
  insertReadyPatchRequest,
  owner,
  prNumber,
  repo,
  repository,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { logsOf } from '../helpers/context.ts';
import { listKeyedJobs } from '../helpers/jobs.ts';

const pullRequest = { owner, repo, number: prNumber };
const closedAt = '2024-03-04T05:06:07Z';
const deletedHeadMessage =
  'Invalid mode "commit": the head repository of the pull request was deleted, so there is ' +
  'no branch to push to; use mode "suggestions".';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);

function newRequest() {
  return insertReadyPatchRequest(setup.context, {
    runId: applyContext.runId,
    userId: applyContext.user.id,
    files: [{ path: 'app.txt', originalText: headText, proposedText }],
  });
}


function setRunRepository(name: string) {
  return setup.context.db
    .update(prRuns)
    .set({ repository: name, headRepository: name })
    .where(eq(prRuns.id, applyContext.runId));
}

function countPullRequestReads(): number {
  return setup.fake.requests.filter(
    (request) =>
      request.method === 'GET' && request.path === `/repos/${repository}/pulls/${prNumber}`,
  ).length;
}


beforeAll(async () => {
  applyContext = await createApplyTestContext();
  setup = applyContext.setup;
});

beforeEach(async () => {
  await resetApplyRun(setup, applyContext.runId);
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

/** Returns the event of the newest `apply rejected` log line. */
function lastRejectionEvent(): unknown {
  return setup.context.logs.filter((line) => line.msg === 'apply rejected').at(-1)?.event;
}

describe('apply, pull request closed on GitHub', () => {
  it('rejects a commit before any write', async () => {
    // The run is not marked closed: the `closed` webhook has not arrived.
    setup.fake.updatePullRequest(pullRequest, { state: 'closed', closedAt });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(
      `Pull request ${repository}#${prNumber} is closed. Reopen it on GitHub to request or ` +
        'apply fixes.',
    );
    expect(error.repository).toBe(repository);
    expect(error.pullRequest).toBe(prNumber);
    expect(error.pullRequestClosedAt).toBe('2024-03-04T05:06:07.000Z');
    await expectNothingApplied(setup, request.id, writesBefore);
    expect(lastRejectionEvent()).toBe('apply.pull_request_closed');
  });

  it('rejects suggestions without a review', async () => {
    setup.fake.updatePullRequest(pullRequest, { state: 'closed', closedAt });
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toContain('is closed. Reopen it on GitHub');
    expect(setup.fake.reviews).toHaveLength(reviewsBefore);
    await expectNothingApplied(setup, request.id, writesBefore);
  });

  it('rejects a merged pull request', async () => {
    setup.fake.updatePullRequest(pullRequest, { state: 'closed', closedAt, mergedAt: closedAt });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(
      `Pull request ${repository}#${prNumber} was merged at 2024-03-04T05:06:07.000Z, so ` +
        'fixes can no longer be applied to it. Request fixes on a new pull request.',
    );
    expect(error.pullRequestClosedAt).toBe('2024-03-04T05:06:07.000Z');
    expect(error.pullRequestMergedAt).toBe('2024-03-04T05:06:07.000Z');
    await expectNothingApplied(setup, request.id, writesBefore);
    expect(lastRejectionEvent()).toBe('apply.pull_request_merged');
  });
});

describe('apply, head repository changed on GitHub', () => {
  // The run stores the base repository as its head, as runs of deleted forks did before their
  // head was stored as ''. The base repository has a branch with the fork branch's name, so a
  // commit would land there.
  it('rejects a commit after the fork was deleted', async () => {
    setup.fake.updatePullRequest(pullRequest, { headOwner: 'forker', headRepo: null });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.code).toBe('bad_request');
    expect(error.message).toBe(deletedHeadMessage);
    await expectNothingApplied(setup, request.id, writesBefore);
    expect(lastRejectionEvent()).toBe('apply.head_repository_deleted');
  });

  it('posts suggestions by default after the fork was deleted', async () => {
    setup.fake.updatePullRequest(pullRequest, { headOwner: 'forker', headRepo: null });
    const request = await newRequest();

    const response = await apply(request.id);

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(result.mode).toBe('suggestions');
    expect(result.commitSha).toBeNull();
    const review = setup.fake.reviews.at(-1)!;
    expect(result.reviewId).toBe(review.id);
    expect(review.commitId).toBe(setup.git.headSha);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('rejects a commit when the head is in a fork', async () => {
    setup.fake.updatePullRequest(pullRequest, { headOwner: 'forker' });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toBe(
      'Invalid mode "commit": the head branch is in the fork forker/widgets, where the app ' +
        'cannot push; use mode "suggestions".',
    );
    await expectNothingApplied(setup, request.id, writesBefore);
    expect(lastRejectionEvent()).toBe('apply.head_in_fork');
  });

  it('compares the head repository without case', async () => {
    // GitHub treats names without case, so a run may store another case than GitHub returns.
    await setRunRepository('Octo-Org/Widgets');
    try {
      const request = await newRequest();

      const response = await apply(request.id, { mode: 'commit' });

      expect(response.status).toBe(200);
      const result = await response.json();
      expect(result.mode).toBe('commit');
      expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
    } finally {
      await setRunRepository(repository);
    }
  });

  it('commits after a rename the run has not seen', async () => {
    // The repository event of a rename can arrive late or not at all. GitHub then returns the
    // new name for the base and head repositories, which still share one repository id.
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const { data } = await octokit.rest.pulls.get({ owner, repo, pull_number: prNumber });
    const renamed = `${owner}/${repo}-renamed`;
    setup.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/pulls/:pull_number',
      status: 200,
      body: {
        ...data,
        base: { ...data.base, repo: { ...data.base.repo, full_name: renamed } },
        head: { ...data.head, repo: { ...data.head.repo, full_name: renamed } },
      },
    });
    const request = await newRequest();

    const response = await apply(request.id);

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(result.mode).toBe('commit');
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
  });

  it('rejects a commit to another head branch', async () => {
    setup.fake.updatePullRequest(pullRequest, { headRef: 'renamed' });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(
      `Pull request ${repository}#${prNumber} has the head branch renamed on GitHub, but the ` +
        `preview was made for branch ${headBranch}, so nothing was committed. Apply with ` +
        '{"mode": "suggestions"} to post the fixes as a review.',
    );
    await expectNothingApplied(setup, request.id, writesBefore);
    expect(lastRejectionEvent()).toBe('apply.head_branch_changed');
  });
});

describe('apply, head branch moved on GitHub', () => {
  /** Counts the git objects that Apply created: blobs, trees and commits. */
  function countObjectWrites(): number {
    return setup.fake.requests.filter(
      (request) => request.method === 'POST' && /\/git\/(blobs|trees|commits)$/.test(request.path),
    ).length;
  }

  /** Pushes a commit to the head branch on the fake GitHub, which sends no webhook here. */
  async function push(): Promise<string> {
    return commitOnBranch(setup.git.dir, headBranch, { 'other.txt': 'pushed\n' });
  }

  function movedMessage(id: string, moved: string): string {
    return (
      `Branch ${headBranch} moved from ${setup.git.headSha} to ${moved} since the preview. ` +
      'Request a new preview on the newest run of the pull request and apply that one instead ' +
      `of patch request ${id}.`
    );
  }

  async function storedRun(headSha: string) {
    const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.headSha, headSha));
    return run;
  }

  it('rejects a moved head before any write', async () => {
    // The push's `synchronize` event never arrived, for example while the service was down.
    const moved = await push();
    setup.fake.updatePullRequest(pullRequest, { headSha: moved, updatedAt: '2024-06-01T09:10:00Z' });
    const request = await newRequest();
    const objectsBefore = countObjectWrites();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(movedMessage(request.id, moved));
    expect(countObjectWrites() - objectsBefore).toBe(0);
    expect(countApplyWrites(setup) - writesBefore).toBe(0);
    expect(await git('rev-parse', headBranch)).toBe(moved);
    const [stored] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(stored!.status).toBe('ready');
    expect(stored!.applyStartedAt).toBeNull();
    expect(stored!.appliedAt).toBeNull();

    // The newest run that the message names exists, and the moved run takes no preview.
    const newer = (await storedRun(moved))!;
    expect(newer.status).toBe('queued');
    expect(newer.prUpdatedAt?.toISOString()).toBe('2024-06-01T09:10:00.000Z');
    expect((await setup.context.boss.getJobById(analyzeQueue, newer.analyzeJobId!))?.state).toBe(
      'created',
    );
    const older = (await storedRun(setup.git.headSha))!;
    expect(older.status).toBe('superseded');
    expect(older.error).toBe(`Superseded by run ${newer.id} for the newer commit ${moved}.`);
    expect(logsOf(setup.context, 'apply.newer_head_recorded').at(-1)?.outcome).toBe(
      `run ${newer.id} queued; superseded 1 older run(s)`,
    );
  });

  it('rejects a preview on the moved run without a charge', async () => {
    const [finding] = await insertFindings(setup.context, applyContext.runId, [
      { path: 'app.txt', line: 2, severity: 'warning' },
    ]);
    const moved = await push();
    setup.fake.updatePullRequest(pullRequest, { headSha: moved, updatedAt: '2024-06-01T09:10:00Z' });
    const applied = await apply((await newRequest()).id);
    expect(applied.status).toBe(409);
    const newer = (await storedRun(moved))!;
    const [requestsBefore] = await setup.context.db.select({ value: count() }).from(patchRequests);

    const response = await applyContext.app.request(`/api/runs/${applyContext.runId}/patch-requests`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${applyContext.user.token}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ findingIds: [finding!.id] }),
    });

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.message).toBe(
      `Run ${applyContext.runId} is superseded by a newer commit, whose run ${newer.id} is being ` +
        `analyzed; request fixes on run ${newer.id} once it has completed.`,
    );
    expect(error.newestRunId).toBe(newer.id);
    const [requestsAfter] = await setup.context.db.select({ value: count() }).from(patchRequests);
    const [ledger] = await setup.context.db.select({ value: count() }).from(tokenEvents);
    const [reservations] = await setup.context.db.select({ value: count() }).from(tokenReservations);
    expect(requestsAfter!.value).toBe(requestsBefore!.value);
    expect(ledger!.value).toBe(0);
    expect(reservations!.value).toBe(0);
  });

  it('queues a check when GitHub lags behind the branch', async () => {
    // GitHub's pull request still shows the previewed head, so only the branch shows the push.
    const moved = await push();
    const request = await newRequest();
    await setup.context.database.sql`DELETE FROM pgboss.job WHERE name = ${confirmPullRequestQueue}`;

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toBe(movedMessage(request.id, moved));
    expect(await storedRun(moved)).toBeUndefined();
    expect((await storedRun(setup.git.headSha))!.status).toBe('completed');
    const checks = await listKeyedJobs(setup.context, confirmPullRequestQueue, `${repositoryId}#${prNumber}`);
    expect(checks.map((job) => job.state)).toEqual(['created']);
    expect(logsOf(setup.context, 'apply.newer_head_check_queued').at(-1)?.checkJobId).toBe(checks[0]!.id);
  });
});

describe('apply, pull request reads', () => {
  it('reads the pull request once per commit', async () => {
    const request = await newRequest();
    const readsBefore = countPullRequestReads();

    const response = await apply(request.id);

    expect(response.status).toBe(200);
    expect(countPullRequestReads() - readsBefore).toBe(1);
  });

  it('reads the pull request once per review', async () => {
    const request = await newRequest();
    const readsBefore = countPullRequestReads();

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(200);
    expect(countPullRequestReads() - readsBefore).toBe(1);
  });

  it('rejects suggestions when the head moved on GitHub', async () => {
    // The head moved on GitHub, and the `synchronize` webhook has not arrived.
    setup.fake.updatePullRequest(pullRequest, { headSha: setup.git.baseSha });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.message).toBe(
      `Pull request #${prNumber} moved from ${setup.git.headSha} to ${setup.git.baseSha} ` +
        'since the preview. Request a new preview on the newest run of the pull request and ' +
        `apply that one instead of patch request ${request.id}.`,
    );
    await expectNothingApplied(setup, request.id, writesBefore);
  });
});

describe('apply, invalid pull request from GitHub', () => {
  const pullPath = `/repos/${repository}/pulls/${prNumber}`;

  /** Returns the pull request as the fake GitHub returns it, for a response to change. */
  async function currentPullRequest(): Promise<Record<string, any>> {
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const { data } = await octokit.rest.pulls.get({ owner, repo, pull_number: prNumber });
    return data as Record<string, any>;
  }

  const cases: [string, (data: Record<string, any>) => { body: unknown; headers?: Record<string, string> }, string][] = [
    [
      'without head',
      (data) => ({ body: { ...data, head: undefined } }),
      'head: Invalid input: expected object, received undefined',
    ],
    [
      'with a malformed head sha',
      (data) => ({ body: { ...data, head: { ...data.head, sha: 'not-a-sha' } } }),
      'head.sha: expected a commit sha of 40 lowercase hex digits',
    ],
    [
      "as a proxy's HTML page",
      () => ({ body: '<html><body>Service Unavailable</body></html>', headers: { 'content-type': 'text/html' } }),
      'body: Invalid input: expected object, received string',
    ],
  ];

  it.each(cases)('answers 502 for a pull request %s', async (_case, change, problem) => {
    const { body, headers } = change(await currentPullRequest());
    setup.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body, headers });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id);

    expect(response.status).toBe(502);
    const { error } = await response.json();
    expect(error.code).toBe('bad_gateway');
    expect(error.message).toBe(
      `GitHub returned an invalid response (status 200) to GET ${pullPath}: ${problem}. GitHub, ` +
        'or a proxy between this server and GITHUB_API_URL, may be failing, so wait a few ' +
        `minutes. Patch request ${request.id} was not applied, so you can apply it again after that.`,
    );
    expect(error.github).toEqual({
      status: 200,
      message: problem,
      method: 'GET',
      path: pullPath,
      invalidResponse: true,
    });
    await expectNothingApplied(setup, request.id, writesBefore);
  });

  it('applies again once GitHub returns the pull request', async () => {
    const data = await currentPullRequest();
    setup.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body: { ...data, head: undefined } });
    const request = await newRequest();
    expect((await apply(request.id)).status).toBe(502);

    const again = await apply(request.id);

    expect(again.status).toBe(200);
    const result = await again.json();
    expect(result.mode).toBe('commit');
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
  });
});
