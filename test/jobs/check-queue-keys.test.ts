// The installation and pull request checks run one at a time per singleton key. A check of one
// key that is still running must not hold up the checks of other keys, which a real pg-boss
// worker fetches from the same queue.
import { eq } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installations } from '../../src/db/schema/index.ts';
import {
  confirmInstallationQueue,
  confirmInstallationQueueOptions,
  handleConfirmInstallationJob,
  queueInstallationConfirmation,
  type ConfirmInstallationJobData,
} from '../../src/jobs/confirm-installation.ts';
import { handleConfirmPullRequestJob } from '../../src/jobs/confirm-pull-request.ts';
import {
  confirmPullRequestQueue,
  pullRequestCheckKey,
  queuePullRequestConfirmation,
  type ConfirmPullRequestJobData,
} from '../../src/jobs/confirm-pull-request-queue.ts';
import { JobLiveness } from '../../src/jobs/job-liveness.ts';
import { startCheckQueuedBehind } from '../../src/jobs/keyed-checks.ts';
import { createQueues } from '../../src/jobs/workers.ts';
import { logsOf } from '../helpers/context.ts';
import {
  addSecondPullRequest,
  createGitHubTestContext,
  insertInstallation,
  owner,
  prNumber,
  repository,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { listKeyedJobs, runDueJob } from '../helpers/jobs.ts';

/** The pull request of key B; the fake's own pull request `prNumber` is key A. */
const otherPrNumber = prNumber + 1;

let setup: GitHubTestContext;

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
  });
});

afterEach(async () => {
  await setup?.close();
});

function requestsTo(path: string) {
  return setup.fake.requests.filter((request) => request.method === 'GET' && request.path === path);
}

async function jobState(jobId: string): Promise<string | undefined> {
  const [row] = await setup.context.database.sql<{ state: string }[]>`
    SELECT state FROM pgboss.job WHERE id = ${jobId}`;
  return row?.state;
}

/** Makes the jobs due now, in the order given, as if their start delay had passed. */
async function makeDue(jobIds: string[]) {
  for (const [index, id] of jobIds.entries()) {
    await setup.context.database.sql`
      UPDATE pgboss.job SET start_after = now() - make_interval(secs => ${jobIds.length - index})
      WHERE id = ${id}`;
  }
}

/**
 * Runs a pg-boss worker on `queue`, with the options of Fixwright's workers, until `done`
 * returns true or 10 s pass. Returns whether `done` returned true.
 */
async function workUntil<Data extends object>(
  queue: string,
  handle: (job: PgBoss.JobWithMetadata<Data>) => Promise<void>,
  done: () => Promise<boolean>,
): Promise<boolean> {
  const running = new Set<Promise<void>>();
  const workerId = await setup.context.boss.work<Data>(
    queue,
    { pollingIntervalSeconds: 0.5, batchSize: 1, includeMetadata: true },
    async ([job]) => {
      if (!job) return;
      const handler = handle(job);
      running.add(handler);
      try {
        await handler;
      } finally {
        running.delete(handler);
      }
    },
  );
  let finished = false;
  for (let waited = 0; waited < 10_000 && !finished; waited += 100) {
    finished = await done();
    if (!finished) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await setup.context.boss.offWork({ id: workerId });
  await Promise.allSettled([...running]);
  return finished;
}

describe('installation checks of two installations', () => {
  const otherInstallation = () => setup.installationId + 100_000;

  beforeEach(async () => {
    await insertInstallation(setup.context, { id: setup.installationId });
    // GitHub reports the other installation active, so its check clears this mark.
    await insertInstallation(setup.context, {
      id: otherInstallation(),
      suspendedAt: new Date('2024-06-01T09:00:00Z'),
    });
    setup.fake.setInstallation({
      id: otherInstallation(),
      account: { login: owner, id: 1, type: 'Organization' },
    });
  });

  async function queueCheck(installationId: number): Promise<string | null> {
    return setup.context.db.transaction((tx) =>
      queueInstallationConfirmation(tx, setup.context.boss, installationId),
    );
  }

  function handle(job: PgBoss.JobWithMetadata<ConfirmInstallationJobData>) {
    return handleConfirmInstallationJob(setup.context, job);
  }

  async function runCheck(jobId: string, whileActive?: () => Promise<void>) {
    await runDueJob<ConfirmInstallationJobData>(
      setup.context,
      confirmInstallationQueue,
      jobId,
      handle,
      whileActive,
    );
  }

  async function otherSuspendedAt() {
    const [row] = await setup.context.db
      .select({ suspendedAt: installations.suspendedAt })
      .from(installations)
      .where(eq(installations.id, otherInstallation()));
    return row!.suspendedAt;
  }

  it('runs one while the other runs', async () => {
    const first = (await queueCheck(setup.installationId))!;
    let second: string | null = null;
    let other: string | null = null;

    await runCheck(first, async () => {
      // An event of the first installation arrives during its check, then one of the other.
      second = await queueCheck(setup.installationId);
      other = await queueCheck(otherInstallation());
      expect(second).not.toBeNull();
      expect(other).not.toBeNull();
      await makeDue([second!, other!]);

      const finished = await workUntil(confirmInstallationQueue, handle, async () => {
        return (await jobState(other!)) === 'completed' && (await jobState(second!)) === 'completed';
      });

      expect(await jobState(other!)).toBe('completed');
      expect(finished).toBe(true);
      expect(await otherSuspendedAt()).toBeNull();
      expect(requestsTo(`/app/installations/${otherInstallation()}`)).toHaveLength(1);
      // The second check found the first running, so it read nothing and queued a third.
      expect(requestsTo(`/app/installations/${setup.installationId}`)).toHaveLength(0);
      expect(logsOf(setup.context, 'job.confirm_installation.deferred')).toMatchObject([
        { jobId: second, runningJobId: first },
      ]);
      const jobs = await listKeyedJobs(setup.context, confirmInstallationQueue, String(setup.installationId));
      expect(jobs.map((job) => job.state)).toEqual(['active', 'completed', 'created']);
      expect(jobs[2]!.waitMs).toBeGreaterThan(5_000);
    });

    // The first check leaves the marks to the third, which reads GitHub after the event.
    const completed = logsOf(setup.context, 'job.confirm_installation.completed');
    expect(completed.at(-1)).toMatchObject({
      jobId: first,
      status: 'skipped',
      reason: expect.stringMatching(/is queued and reads GitHub later$/),
    });
    const jobs = await listKeyedJobs(setup.context, confirmInstallationQueue, String(setup.installationId));
    await runCheck(jobs[2]!.id);
    // The reads of the first check and the third.
    expect(requestsTo(`/app/installations/${setup.installationId}`)).toHaveLength(2);
    expect(logsOf(setup.context, 'job.confirm_installation.completed').at(-1)).toMatchObject({
      jobId: jobs[2]!.id,
      status: 'unchanged',
    });
  });

  it('skips for a check that starts during it', async () => {
    const first = (await queueCheck(setup.installationId))!;
    // A worker fetches a second check while the first waits for GitHub's response.
    let second: PgBoss.JobWithMetadata<ConfirmInstallationJobData> | undefined;
    const github = setup.context.github!;
    const appOctokit = github.appOctokit.bind(github);
    github.appOctokit = () => {
      const octokit = appOctokit();
      octokit.hook.after('request', async () => {
        if (second) return;
        const secondId = (await queueCheck(setup.installationId))!;
        await makeDue([secondId]);
        [second] = await setup.context.boss.fetch<ConfirmInstallationJobData>(
          confirmInstallationQueue,
          { batchSize: 1, includeMetadata: true },
        );
      });
      return octokit;
    };

    await runCheck(first);

    expect(second).toBeDefined();
    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      {
        jobId: first,
        status: 'skipped',
        reason: `check ${second!.id} started during this one, so it or the check that it queues reads GitHub later`,
      },
    ]);
    // The first check has ended, so the second reads GitHub and writes what it read.
    await handle(second!);
    expect(logsOf(setup.context, 'job.confirm_installation.deferred')).toHaveLength(0);
    expect(requestsTo(`/app/installations/${setup.installationId}`)).toHaveLength(2);
    expect(logsOf(setup.context, 'job.confirm_installation.completed').at(-1)).toMatchObject({
      jobId: second!.id,
      status: 'unchanged',
    });
  });

  it('defers both of two fetched together', async () => {
    const first = (await queueCheck(setup.installationId))!;
    let second: PgBoss.JobWithMetadata<ConfirmInstallationJobData> | undefined;

    // Two workers fetch both checks before either handler starts, so each handler finds the
    // other check running. Both end without reading GitHub, and the check that they queue
    // reads it.
    await runCheck(first, async () => {
      const secondId = (await queueCheck(setup.installationId))!;
      await makeDue([secondId]);
      [second] = await setup.context.boss.fetch<ConfirmInstallationJobData>(
        confirmInstallationQueue,
        { batchSize: 1, includeMetadata: true },
      );
      expect(second?.id).toBe(secondId);
      await handle(second!);
    });
    await setup.context.boss.complete(confirmInstallationQueue, second!.id);

    expect(requestsTo(`/app/installations/${setup.installationId}`)).toHaveLength(0);
    const jobs = await listKeyedJobs(setup.context, confirmInstallationQueue, String(setup.installationId));
    expect(jobs.map((job) => job.state)).toEqual(['completed', 'completed', 'created']);
    expect(logsOf(setup.context, 'job.confirm_installation.deferred')).toMatchObject([
      { jobId: second!.id, runningJobId: first, nextJobId: jobs[2]!.id },
      { jobId: first, runningJobId: second!.id, nextJobId: null },
    ]);
    expect(jobs[2]!.waitMs).toBeGreaterThan(5_000);
  });
  it('waits for a check that a worker runs', async () => {
    const key = String(setup.installationId);
    const first = (await queueCheck(setup.installationId))!;
    // A worker of another process runs the first check and holds its liveness lock.
    const liveness = new JobLiveness(setup.context.database.url, setup.context.logger);
    await liveness.connect();
    let endFirst = () => {};
    let holding: Promise<void> | undefined;
    try {
      await runCheck(first, async () => {
        // liveness.run calls its task once the lock is taken.
        await new Promise<void>((taken) => {
          holding = liveness.run(first, () => {
            taken();
            return new Promise<void>((resolve) => {
              endFirst = resolve;
            });
          });
        });
        const second = (await queueCheck(setup.installationId))!;
        await runCheck(second);

        const jobs = await listKeyedJobs(setup.context, confirmInstallationQueue, key);
        expect(jobs.map((job) => job.state)).toEqual(['active', 'completed', 'created']);
        const waiting = jobs[2]!;
        // It starts at the latest 10 s after the first check's 5-minute expiry.
        expect(waiting.waitMs).toBeGreaterThan(290_000);
        expect(waiting.waitMs).toBeLessThanOrEqual(310_000);
        const [deferred] = logsOf(setup.context, 'job.confirm_installation.deferred');
        expect(deferred).toMatchObject({ jobId: second, runningJobId: first, nextJobId: waiting.id });
        expect(typeof deferred!.latestStart).toBe('string');

        // The end of the second check, which deferred, moves nothing while the first runs.
        const check = { queue: confirmInstallationQueue, key, delaySeconds: 10 };
        const logger = setup.context.logger;
        expect(await startCheckQueuedBehind(setup.context.db, logger, { ...check, endedJobId: second })).toBeNull();
        endFirst();
        await holding;
        expect(await startCheckQueuedBehind(setup.context.db, logger, { ...check, endedJobId: first })).toBe(
          waiting.id,
        );
        const [, , moved] = await listKeyedJobs(setup.context, confirmInstallationQueue, key);
        expect(moved!.waitMs).toBeGreaterThan(5_000);
        expect(moved!.waitMs).toBeLessThanOrEqual(10_000);
      });
    } finally {
      endFirst();
      await holding;
      await liveness.close();
    }
  });
});

describe('pull request checks of two pull requests', () => {
  beforeEach(() => {
    addSecondPullRequest(setup, otherPrNumber);
  });

  async function queueCheck(number: number): Promise<string | null> {
    const data = { installationId: setup.installationId, repositoryId, repository, prNumber: number };
    return setup.context.db.transaction((tx) =>
      queuePullRequestConfirmation(tx, setup.context.boss, data),
    );
  }

  function handle(job: PgBoss.JobWithMetadata<ConfirmPullRequestJobData>) {
    return handleConfirmPullRequestJob(setup.context, job);
  }

  it('runs one while the other runs', async () => {
    const first = (await queueCheck(prNumber))!;
    let second: string | null = null;
    let other: string | null = null;

    await runDueJob<ConfirmPullRequestJobData>(setup.context, confirmPullRequestQueue, first, handle, async () => {
      second = await queueCheck(prNumber);
      other = await queueCheck(otherPrNumber);
      expect(second).not.toBeNull();
      expect(other).not.toBeNull();
      await makeDue([second!, other!]);

      const finished = await workUntil(confirmPullRequestQueue, handle, async () => {
        return (await jobState(other!)) === 'completed' && (await jobState(second!)) === 'completed';
      });

      expect(await jobState(other!)).toBe('completed');
      expect(finished).toBe(true);
      expect(requestsTo(`/repos/${repository}/pulls/${otherPrNumber}`)).toHaveLength(1);
      expect(requestsTo(`/repos/${repository}/pulls/${prNumber}`)).toHaveLength(0);
      expect(logsOf(setup.context, 'job.confirm_pull_request.deferred')).toMatchObject([
        { jobId: second, runningJobId: first },
      ]);
      const key = pullRequestCheckKey(repositoryId, prNumber);
      const jobs = await listKeyedJobs(setup.context, confirmPullRequestQueue, key);
      expect(jobs.map((job) => job.state)).toEqual(['active', 'completed', 'created']);
    });

    expect(logsOf(setup.context, 'job.confirm_pull_request.completed').at(-1)).toMatchObject({
      jobId: first,
      status: 'skipped',
      reason: expect.stringMatching(/is queued and reads GitHub later$/),
    });
  });
});

describe('check queues of an earlier version', () => {
  const queue = confirmInstallationQueue;

  async function queueCheck(installationId: number): Promise<string> {
    const id = await setup.context.db.transaction((tx) =>
      queueInstallationConfirmation(tx, setup.context.boss, installationId),
    );
    expect(id).not.toBeNull();
    return id!;
  }

  async function fetchOne(): Promise<string | undefined> {
    const [job] = await setup.context.boss.fetch(queue, { batchSize: 1 });
    return job?.id;
  }

  async function policies(): Promise<Record<string, string>> {
    const rows = await setup.context.database.sql<{ id: string; policy: string }[]>`
      SELECT id, policy FROM pgboss.job WHERE name = ${queue}`;
    return Object.fromEntries(rows.map((row) => [row.id, row.policy]));
  }

  /** Sets the queue's stored policy, as the version that created it did. */
  async function storePolicy(policy: PgBoss.QueuePolicy) {
    await setup.context.boss.updateQueue(queue, { name: queue, ...confirmInstallationQueueOptions, policy });
  }

  it('moves a stately queue and its jobs', async () => {
    await storePolicy('stately');
    const running = await queueCheck(1);
    await makeDue([running]);
    expect(await fetchOne()).toBe(running);
    const queued = await queueCheck(1);
    const other = await queueCheck(2);
    expect(Object.values(await policies())).toEqual(['stately', 'stately', 'stately']);

    await createQueues(setup.context.boss, undefined, setup.context.logger);

    expect((await setup.context.boss.getQueue(queue))?.policy).toBe('short');
    expect((await setup.context.boss.getQueue(confirmPullRequestQueue))?.policy).toBe('short');
    expect(await policies()).toEqual({ [running]: 'short', [queued]: 'short', [other]: 'short' });
    expect(logsOf(setup.context, 'jobs.queue_policy_changed')).toMatchObject([
      { queue, from: 'stately', to: 'short', jobs: 3 },
    ]);
    // The queued check of the running key no longer fails the fetch for the other key.
    await makeDue([queued, other]);
    expect(await fetchOne()).toBe(queued);
    expect(await fetchOne()).toBe(other);
  });

  it('leaves a duplicate queued job', async () => {
    await storePolicy('stately');
    const earlier = await queueCheck(1);
    // A process of this version has switched the queue already and queued the same key.
    await storePolicy('short');
    const later = await queueCheck(1);

    await createQueues(setup.context.boss, undefined, setup.context.logger);

    expect(await policies()).toEqual({ [earlier]: 'stately', [later]: 'short' });
    expect(logsOf(setup.context, 'jobs.queue_policy_changed')).toHaveLength(0);
    await makeDue([earlier, later]);
    expect(await fetchOne()).toBe(earlier);
    expect(await fetchOne()).toBe(later);
  });

  it('logs nothing for a queue of this version', async () => {
    const queued = await queueCheck(1);

    await createQueues(setup.context.boss, undefined, setup.context.logger);

    expect(await policies()).toEqual({ [queued]: 'short' });
    expect(logsOf(setup.context, 'jobs.queue_policy_changed')).toHaveLength(0);
  });
});
