// An apply job that meets the claim of another apply waits for that claim. A press meanwhile
// gets the wait, and the job starts as soon as the other apply releases the claim.
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { releaseApplyClaim } from '../../src/apply/apply-claim-release.ts';
import { patchRequests } from '../../src/db/schema/index.ts';
import { secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { cancelApplyJobsOfRuns } from '../../src/runs/cancel-run-work.ts';
import { applyQueue, handleApplyJob, type ApplyJobData } from '../../src/jobs/apply.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { bindApplyJobHelpers, hookPullRequestReads } from '../helpers/apply-jobs.ts';
import { logsOf } from '../helpers/context.ts';
import type { GitHubTestContext } from '../helpers/github-context.ts';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let cookie: string;
let pullRequestReads: ReturnType<typeof hookPullRequestReads>;

const git = (...args: string[]) => gitIn(setup, ...args);
const { newRequest, stored, applyJobs, runApplyJob, previewPage, previewJson } = bindApplyJobHelpers(() => ({
  applyContext,
  cookie,
}));

/** Counts the requests to GitHub since `since` that write: every method except GET. */
function writes(since: number): number {
  return setup.fake.requests.slice(since).filter((request) => request.method !== 'GET').length;
}

/**
 * Waits until `check` returns true, polling every 100 ms, and returns the milliseconds it
 * took. Fails after `timeoutMs`.
 */
async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Date.now() - start;
}

/**
 * Queues an apply job that waits for a rate limit, starts it as a worker does, and lets an API
 * press without a mode claim the request before the job tries to. The press stops at its read
 * of the pull request until `releasePress` is called. Returns the press's pending response and
 * the job that waits for the press's claim.
 */
async function claimBeforeTheJob(requestId: string) {
  setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
  expect((await requestApply(applyContext, requestId)).status).toBe(202);
  const [first] = await applyJobs(requestId);
  let press!: ReturnType<typeof holdAtPullRequestRead>;
  await runApplyJob(first!.id, async () => {
    // The job's first step clears its wait, and a press after that step and before the job's
    // claim goes ahead and claims first. This takes that step early, to open that window.
    await setup.context.db
      .update(patchRequests)
      .set({ applyRateLimitedUntil: null })
      .where(eq(patchRequests.id, requestId));
    press = holdAtPullRequestRead(requestId);
    await press.reading;
  });
  const jobs = await applyJobs(requestId);
  expect(jobs).toHaveLength(2);
  return { press: press.response, releasePress: press.release, waiting: jobs[1]! };
}

beforeAll(async () => {
  applyContext = await createApplyTestContext({ env: { GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: '3600' } });
  setup = applyContext.setup;
  const session = await createSession(setup.context.db, applyContext.user.id, 1);
  cookie = `fixwright_session=${session.token}`;
  pullRequestReads = hookPullRequestReads(setup);
});

beforeEach(async () => {
  pullRequestReads.set(null);
  await resetPullRequestHead(setup);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply job waiting for another apply', () => {
  it('answers a press with the wait', async () => {
    const request = await newRequest();
    const { press, releasePress, waiting } = await claimBeforeTheJob(request.id);
    const until = (await stored(request.id)).applyClaimWaitUntil!;
    expect(until.getTime()).toBeGreaterThan(Date.now() + 9 * 60_000);
    expect(new Date(waiting.start_after).getTime()).toBe(until.getTime());
    const since = setup.fake.requests.length;

    const responses = [
      await requestApply(applyContext, request.id),
      await requestApply(applyContext, request.id, { mode: 'commit' }),
    ];

    for (const response of responses) {
      expect(response.status).toBe(202);
      expect(await response.json()).toEqual({
        id: request.id,
        status: 'waiting',
        otherApplyWaitUntil: until.toISOString(),
      });
    }
    expect(setup.fake.requests.length).toBe(since);
    expect((await applyJobs(request.id)).map((job) => job.id)).toEqual([
      expect.any(String),
      waiting.id,
    ]);
    const json = await previewJson(request.id);
    expect(json.otherApplyWait).toEqual({ job: applyQueue, until: until.toISOString() });
    expect(json.rateLimitWait).toBeNull();
    const page = await previewPage(request.id);
    expect(page).toContain(
      'Applying waits for another apply of this preview that started first. Unless that apply ' +
        'succeeds, this one continues by itself as soon as it ends, and at the latest at',
    );
    expect(page).toContain(`datetime="${until.toISOString()}"`);

    // The press with the claim applies, and the waiting job then ends without a write.
    releasePress();
    expect((await press).status).toBe(200);
    const applied = await stored(request.id);
    expect(applied.applyMode).toBe('commit');
    expect(applied.applyClaimWaitUntil).toBeNull();
    const [, restarted] = await applyJobs(request.id);
    expect(restarted!.state).toBe('cancelled');
    const [, , next] = await applyJobs(request.id);
    expect(next).toBeDefined();
    expect(next!.state).toBe('created');
    expect(applied.applyJobId).toBe(next!.id);
    const beforeJob = setup.fake.requests.length;
    await runApplyJob(next!.id);
    expect(writes(beforeJob)).toBe(0);
    const after = await stored(request.id);
    expect(after.appliedCommitSha).toBe(applied.appliedCommitSha);
    expect(after.applyError).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(applied.appliedCommitSha);
    expect((await previewJson(request.id)).otherApplyWait).toBeNull();
  });

  it('starts once the other apply fails', async () => {
    const request = await newRequest();
    const { press, releasePress, waiting } = await claimBeforeTheJob(request.id);
    expect(new Date(waiting.start_after).getTime()).toBeGreaterThan(Date.now() + 9 * 60_000);
    // The press's ref update is rejected, so it ends without applying.
    setup.fake.queueResponse({
      method: 'PATCH',
      path: refPattern,
      status: 422,
      body: { message: `Protected branch update failed for refs/heads/${headBranch}.` },
    });
    const since = setup.fake.requests.length;
    // A worker as startWorkers runs it, polling every 0.5 s.
    await setup.context.boss.work<ApplyJobData>(
      applyQueue,
      { includeMetadata: true, batchSize: 1, pollingIntervalSeconds: 0.5 },
      async ([job]) => {
        if (job) await handleApplyJob(setup.context, job);
      },
    );

    try {
      releasePress();
      expect((await press).status).toBe(502);
      const released = Date.now();
      const releasedRow = await stored(request.id);
      expect(releasedRow.applyStartedAt).toBeNull();
      expect(releasedRow.applyJobId).not.toBe(waiting.id);
      expect(releasedRow.applyClaimWaitUntil!.getTime()).toBeLessThanOrEqual(released + 1000);
      expect((await setup.context.boss.getJobById(applyQueue, waiting.id))!.state).toBe('cancelled');

      const restartedId = releasedRow.applyJobId!;
      const startedAfter = await waitFor(
        async () => (await setup.context.boss.getJobById(applyQueue, restartedId))!.state !== 'created',
        15_000,
      );
      const appliedAfter = await waitFor(async () => (await stored(request.id)).appliedAt !== null, 15_000);

      // A worker polls every 0.5 s, and GitHub writes are sent at least 1 s apart.
      expect(startedAfter).toBeLessThan(3000);
      expect(appliedAfter).toBeLessThan(10_000);
      const applied = await stored(request.id);
      expect(applied.applyError).toBeNull();
      expect(applied.applyClaimWaitUntil).toBeNull();
      expect(applied.applyMode).toBe('commit');
      expect(await git('rev-parse', headBranch)).toBe(applied.appliedCommitSha);
      expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
      const refUpdates = setup.fake.requests
        .slice(since)
        .filter((request) => request.method === 'PATCH' && refPattern.test(request.path));
      // The press's rejected update and the job's update, one after the other.
      expect(refUpdates).toHaveLength(2);
    } finally {
      await setup.context.boss.offWork(applyQueue);
    }
  });

  it('starts at once after a release before the requeue', async () => {
    const request = await newRequest();
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    expect((await requestApply(applyContext, request.id)).status).toBe(202);
    const [first] = await applyJobs(request.id);
    // Another call holds the claim when the job tries to take it, and releases it without a
    // result before the job queues its successor, in the job's second transaction.
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: new Date(Date.now() - 60_000) })
      .where(eq(patchRequests.id, request.id));
    const transaction = setup.context.db.transaction.bind(setup.context.db);
    let transactions = 0;
    const spy = vi.spyOn(setup.context.db, 'transaction').mockImplementation((async (...args: Parameters<typeof transaction>) => {
      transactions += 1;
      if (transactions === 2) {
        await setup.context.db
          .update(patchRequests)
          .set({ applyStartedAt: null })
          .where(eq(patchRequests.id, request.id));
      }
      return transaction(...args);
    }) as typeof transaction);
    const before = Date.now();

    try {
      await runApplyJob(first!.id);
    } finally {
      spy.mockRestore();
    }

    expect(transactions).toBe(2);
    const jobs = await applyJobs(request.id);
    expect(jobs).toHaveLength(2);
    const next = jobs[1]!;
    expect(new Date(next.start_after).getTime()).toBeLessThan(Date.now() + 1000);
    expect(new Date(next.start_after).getTime()).toBeGreaterThanOrEqual(before - 1000);
    const waiting = await stored(request.id);
    expect(waiting.applyJobId).toBe(next.id);
    expect(waiting.applyClaimWaitUntil!.getTime()).toBe(new Date(next.start_after).getTime());

    await runApplyJob(next.id);

    const applied = await stored(request.id);
    expect(applied.appliedAt).not.toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(applied.appliedCommitSha);
  });

  it('keeps a claim that a later call took over', async () => {
    const request = await newRequest();
    const first = holdAtPullRequestRead(request.id);
    await first.reading;
    // The first press has run past the 10 minutes after which its claim is stale, so a second
    // press takes the claim over.
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: new Date(Date.now() - 11 * 60_000) })
      .where(eq(patchRequests.id, request.id));
    const second = holdAtPullRequestRead(request.id);
    await second.reading;
    const secondClaim = (await stored(request.id)).applyStartedAt!;
    expect(secondClaim.getTime()).toBeGreaterThan(Date.now() - 60_000);

    // The first press ends without applying, because its ref update is rejected.
    setup.fake.queueResponse({
      method: 'PATCH',
      path: refPattern,
      status: 422,
      body: { message: `Protected branch update failed for refs/heads/${headBranch}.` },
    });
    first.release();
    expect((await first.response).status).toBe(502);
    const takenOver = logsOf(setup.context, 'apply.claim_taken_over');
    expect(takenOver).toHaveLength(1);

    // The second press keeps the claim, so a third press is rejected and writes nothing.
    expect((await stored(request.id)).applyStartedAt).toEqual(secondClaim);
    const since = setup.fake.requests.length;
    const third = await requestApply(applyContext, request.id);
    expect(third.status).toBe(409);
    expect(writes(since)).toBe(0);

    second.release();
    expect((await second.response).status).toBe(200);
    const applied = await stored(request.id);
    expect(applied.applyStartedAt).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(applied.appliedCommitSha);
    expect(await git('rev-parse', `${headBranch}~1`)).toBe(setup.git.headSha);
  });
  it('base change cancels the requeued job', async () => {
    const request = await newRequest();
    const { boss, db } = setup.context;
    const jobData: ApplyJobData = { patchRequestId: request.id, userId: applyContext.user.id };
    const waitingJobId = await boss.send(applyQueue, jobData, { startAfter: 600 });
    // A call has the claim, and an apply job waits for it.
    const [claim] = await db
      .update(patchRequests)
      .set({
        applyStartedAt: sql`now()`,
        applyJobId: waitingJobId,
        applyClaimWaitUntil: new Date(Date.now() + 600_000),
      })
      .where(eq(patchRequests.id, request.id))
      .returning({ claimedAt: sql<string>`${patchRequests.applyStartedAt}::text` });
    const reason = 'The apply was cancelled because the base branch changed.';

    // The base change's cancel starts after the release queued the job that starts now, and
    // waits for the release's row lock.
    const send = boss.send.bind(boss);
    let cancel!: Promise<number>;
    const spy = vi.spyOn(boss, 'send').mockImplementation((async (...args: Parameters<typeof send>) => {
      const id = await send(...args);
      cancel = db.transaction((tx) => cancelApplyJobsOfRuns(tx, boss, [applyContext.runId], reason));
      await waitFor(async () => {
        const [row] = await setup.context.database.sql<{ waiting: number }[]>`
          SELECT count(*)::int AS waiting FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`;
        return row!.waiting > 0;
      }, 5_000);
      return id;
    }) as typeof send);
    try {
      await releaseApplyClaim(
        setup.context,
        { patchRequestId: request.id, claimedAt: claim!.claimedAt },
        {},
        setup.context.logger,
      );
    } finally {
      spy.mockRestore();
    }

    expect(await cancel).toBe(1);
    const row = await stored(request.id);
    expect(row.applyStartedAt).toBeNull();
    expect(row.applyError).toBe(reason);
    expect(row.applyJobId).not.toBe(waitingJobId);
    expect((await boss.getJobById(applyQueue, waitingJobId!))!.state).toBe('cancelled');
    expect((await boss.getJobById(applyQueue, row.applyJobId!))!.state).toBe('cancelled');
  });
});

/**
 * Sends an API press without a mode that claims the request and then stops at its read of the
 * pull request. `reading` resolves once it got there, and `release` lets it go on.
 */
function holdAtPullRequestRead(requestId: string) {
  let release!: () => void;
  const holds = new Promise<void>((resolve) => {
    release = resolve;
  });
  let reached!: () => void;
  const reading = new Promise<void>((resolve) => {
    reached = resolve;
  });
  pullRequestReads.set(async () => {
    reached();
    await holds;
  });
  const response = Promise.resolve(requestApply(applyContext, requestId));
  return { reading, release, response };
}
