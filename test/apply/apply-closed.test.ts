import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import { secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { applyQueue } from '../../src/jobs/apply.ts';
import {
  createApplyTestContext,
  gitIn,
  headText,
  proposedText,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import {
  fakePullRequestEvent,
  insertReadyPatchRequest,
  prNumber,
  repository,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import {
  postSignedWebhook,
  waitForLockWait,
} from '../helpers/webhooks.ts';

const secret = 'apply-closed-secret';
const closedMessage =
  `Pull request ${repository}#${prNumber} is closed. Reopen it on GitHub to request or ` +
  'apply fixes.';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let delivery = 0;

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string) => requestApply(applyContext, id);

function newRequest() {
  return insertReadyPatchRequest(setup.context, {
    runId: applyContext.runId,
    userId: applyContext.user.id,
    files: [{ path: 'app.txt', originalText: headText, proposedText }],
  });
}

/** GitHub's example `pull_request` payload for `action`, moved to the fake's pull request. */
function pullRequestEvent(action: 'closed' | 'reopened'): Record<string, any> {
  const payload = fakePullRequestEvent(setup, action);
  // GitHub's example `reopened` payload is older than its `closed` one. A reopen comes after
  // the close, and a reopen older than the close keeps the pull request closed.
  if (action === 'reopened') payload.pull_request.updated_at = '2019-05-15T15:30:00Z';
  return payload;
}

async function deliver(action: 'closed' | 'reopened'): Promise<void> {
  const response = await postSignedWebhook(applyContext.app, {
    secret,
    event: 'pull_request',
    deliveryId: `apply-closed-${delivery++}`,
    payload: pullRequestEvent(action),
  });
  expect(response.status).toBe(202);
}

/** Counts the requests that write to the repository: new commits and ref updates. */
function countWrites(): number {
  return setup.fake.requests.filter(
    (request) =>
      (request.method === 'POST' && request.path.endsWith('/git/commits')) ||
      (request.method === 'PATCH' && request.path.includes('/git/refs/')),
  ).length;
}

async function stored(id: string) {
  const [row] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  return row!;
}

beforeAll(async () => {
  applyContext = await createApplyTestContext({ env: { WEBHOOK_SECRET: secret } });
  setup = applyContext.setup;
});

beforeEach(async () => {
  await resetPullRequestHead(setup);
  await setup.context.db
    .update(prRuns)
    .set({ prClosedAt: null })
    .where(eq(prRuns.id, applyContext.runId));
});

afterAll(async () => {
  await setup?.close();
});

describe('apply on a closed pull request', () => {
  it('rejects without writing to GitHub', async () => {
    const request = await newRequest();
    await deliver('closed');
    const writesBefore = countWrites();

    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toBe(closedMessage);
    expect(error.repository).toBe(repository);
    expect(error.pullRequest).toBe(prNumber);
    expect(error.pullRequestClosedAt).toBe('2019-05-15T15:21:18.000Z');
    expect(countWrites()).toBe(writesBefore);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const row = await stored(request.id);
    expect(row.status).toBe('ready');
    expect(row.applyStartedAt).toBeNull();
    expect(row.appliedAt).toBeNull();
  });

  it('commits after reopen', async () => {
    const request = await newRequest();
    await deliver('closed');
    expect((await apply(request.id)).status).toBe(409);

    await deliver('reopened');
    const response = await apply(request.id);

    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.mode).toBe('commit');
    expect(await git('rev-parse', headBranch)).toBe(body.commitSha);
  });

  it('returns the stored result of an earlier apply', async () => {
    const request = await newRequest();
    const first = await (await apply(request.id)).json();
    await deliver('closed');
    const writesBefore = countWrites();

    const response = await apply(request.id);

    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.alreadyApplied).toBe(true);
    expect(body.commitSha).toBe(first.commitSha);
    expect(countWrites()).toBe(writesBefore);
  });

  it('rejects a close racing the claim', async () => {
    const request = await newRequest();
    const writesBefore = countWrites();
    // The close has marked the run but not committed when the apply reads the run, so the
    // apply passes its first check and then waits for the run's row lock to claim.
    let applying!: Promise<Response>;
    await setup.context.db.transaction(async (tx) => {
      // Closed again after the reopen of the test above, so the close is not taken as stale.
      const event = pullRequestEvent('closed');
      event.pull_request.closed_at = '2019-05-15T15:40:00Z';
      event.pull_request.updated_at = '2019-05-15T15:40:00Z';
      const payload = pullRequestPayload.parse(event);
      await handlePullRequestEvent(tx, setup.context.boss, payload);
      applying = Promise.resolve(apply(request.id));
      await waitForLockWait(setup.context);
    });
    const response = await applying;

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toBe(closedMessage);
    expect(countWrites()).toBe(writesBefore);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const row = await stored(request.id);
    expect(row.applyStartedAt).toBeNull();
    expect(row.appliedAt).toBeNull();
  });

  it('cancels an apply waiting for a rate limit', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await apply(request.id)).status).toBe(202);
    const jobId = (await stored(request.id)).applyJobId!;
    expect(jobId).not.toBeNull();
    // Later than the closes and the reopen of the tests above, so it is not taken as stale.
    const event = pullRequestEvent('closed');
    event.pull_request.closed_at = '2019-05-15T15:50:00Z';
    event.pull_request.updated_at = '2019-05-15T15:50:00Z';

    const outcome = await setup.context.db.transaction((tx) =>
      handlePullRequestEvent(tx, setup.context.boss, pullRequestPayload.parse(event)),
    );

    expect(outcome).toBe(
      'pull request closed: marked 1 run(s) closed, cancelled 0 run(s), 0 patch request(s) and 1 apply job(s)',
    );
    expect((await setup.context.boss.getJobById(applyQueue, jobId))!.state).toBe('cancelled');
    const row = await stored(request.id);
    expect(row.applyError).toBe(
      `The apply was cancelled because pull request ${repository}#${prNumber} was closed. Reopen ` +
        'it on GitHub, then apply again.',
    );
    expect(row.applyRateLimitedUntil).toBeNull();
    expect(row.status).toBe('ready');
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
  });
});
