// The installation and pull request checks, and the resume of an installation's open pull
// requests, as startWorkers runs them: with the recovery of a dead worker's check, and with
// several workers per queue, against the fake GitHub.
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeState } from '../../src/demo/fakes/github.ts';
import type { Route, RouteContext } from '../../src/demo/fakes/github/router.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { installations } from '../../src/db/schema/index.ts';
import {
  confirmInstallationQueue,
  queueInstallationConfirmation,
} from '../../src/jobs/confirm-installation.ts';
import {
  queuePullRequestConfirmation,
} from '../../src/jobs/confirm-pull-request-queue.ts';
import { queueInstallationResume, resumeInstallationQueue } from '../../src/jobs/resume-installation-queue.ts';
import { startWorkers } from '../../src/jobs/workers.ts';
import { logsOf } from '../helpers/context.ts';
import { listKeyedJobs } from '../helpers/jobs.ts';
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

let setup: GitHubTestContext;
let workers: { close(): Promise<void> } | undefined;
/** Ends the responses that the fake GitHub holds back, so that its server can close. */
const releases: (() => void)[] = [];

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    // The recovery pass at start then takes a job active for 2 s with no lock for dead.
    env: { JOB_RECOVERY_SECONDS: '2' },
  });
});

afterEach(async () => {
  for (const release of releases.splice(0)) release();
  if (workers) {
    // startWorkers' close runs after pg-boss has stopped, as the service does it.
    await setup.context.boss.stop({ graceful: false, wait: true });
    await workers.close();
    workers = undefined;
  }
  await setup?.close();
});

async function start() {
  workers = await startWorkers(setup.context, setup.context.database.url);
}

const installationPath = '/app/installations/:installation_id';

async function queuePullRequestCheck(number: number): Promise<string> {
  const data = { installationId: setup.installationId, repositoryId, repository, prNumber: number };
  const id = await setup.context.db.transaction((tx) =>
    queuePullRequestConfirmation(tx, setup.context.boss, data),
  );
  expect(id).not.toBeNull();
  return id!;
}

/** Queues a resume of the fake's installation, due now. */
async function queueResume(): Promise<string> {
  const id = await setup.context.db.transaction((tx) =>
    queueInstallationResume(tx, setup.context.boss, setup.installationId, { startAfter: new Date() }),
  );
  expect(id).not.toBeNull();
  return id!;
}

async function queueInstallationCheck(installationId: number): Promise<string> {
  const id = await setup.context.db.transaction((tx) =>
    queueInstallationConfirmation(tx, setup.context.boss, installationId),
  );
  expect(id).not.toBeNull();
  return id!;
}

/** Makes the job due now, as if its start delay had passed. */
async function makeDue(jobId: string) {
  await setup.context.database.sql`
    UPDATE pgboss.job SET start_after = now() - interval '1 second' WHERE id = ${jobId}`;
}

async function jobState(jobId: string): Promise<string | undefined> {
  const [row] = await setup.context.database.sql<{ state: string }[]>`
    SELECT state FROM pgboss.job WHERE id = ${jobId}`;
  return row?.state;
}

function requestsTo(path: string) {
  return setup.fake.requests.filter((request) => request.method === 'GET' && request.path === path);
}

async function suspendedAt(installationId: number): Promise<Date | null | undefined> {
  const [row] = await setup.context.db
    .select({ suspendedAt: installations.suspendedAt })
    .from(installations)
    .where(eq(installations.id, installationId));
  return row?.suspendedAt;
}

/**
 * Replaces the fake GitHub's route `method` `pattern` with one that runs `before` first, then
 * the default route.
 */
function wrapRoute(
  method: string,
  pattern: string,
  before: (context: RouteContext<FakeState>) => Promise<void>,
) {
  const route = defaultRoutes.find((candidate) => candidate.method === method && candidate.pattern === pattern);
  expect(route).toBeDefined();
  setup.fake.addRoute({
    ...(route as Route<FakeState>),
    async handle(context) {
      await before(context);
      return route!.handle(context);
    },
  });
}

/** Holds back the fake GitHub's responses to GET `pattern` whose `param` is `value` until the test ends. */
function holdResponses(pattern: string, param: string, value: string) {
  const released = new Promise<void>((resolve) => releases.push(resolve));
  wrapRoute('GET', pattern, async (context) => {
    if (context.params[param] === value) await released;
  });
}

/**
 * Polls `done` every 100 ms until it returns true, and returns the milliseconds that took, or
 * Infinity after `timeoutMs`.
 */
async function waitFor(done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await done()) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Infinity;
}

describe('check of a dead worker', () => {
  it('recovers before the next check', async () => {
    const installationId = setup.installationId;
    // GitHub reports the installation active, so a check that reads it clears this mark.
    await insertInstallation(setup.context, {
      id: installationId,
      suspendedAt: new Date('2024-06-01T09:00:00Z'),
    });
    // A worker took the check 2 minutes ago and was killed, so no session holds its lock.
    const dead = await queueInstallationCheck(installationId);
    await makeDue(dead);
    const [fetched] = await setup.context.boss.fetch(confirmInstallationQueue);
    expect(fetched?.id).toBe(dead);
    await setup.context.database.sql`
      UPDATE pgboss.job SET started_on = now() - interval '2 minutes' WHERE id = ${dead}`;
    // An event queued another check of the installation, which is due now.
    const next = await queueInstallationCheck(installationId);
    await makeDue(next);

    await start();
    const elapsed = await waitFor(async () => (await suspendedAt(installationId)) === null, 30_000);

    // The recovery pass at start confirms the dead job after 2 s. A check fetched before that
    // defers and queues one 10 s later, so the mark is cleared within about 13 s.
    expect(elapsed).toBeLessThan(20_000);
    expect(logsOf(setup.context, 'jobs.dead_worker')).toMatchObject([
      { jobId: dead, queue: confirmInstallationQueue, lastAttempt: false },
    ]);
    // pg-boss retries the dead check after its backoff of at least 15 s.
    expect(await jobState(dead)).toBe('retry');
    expect(requestsTo(`/app/installations/${installationId}`)).toHaveLength(1);
    const completed = logsOf(setup.context, 'job.confirm_installation.completed');
    expect(completed).toMatchObject([{ status: 'corrected' }]);
    expect(completed[0]!.jobId).not.toBe(dead);
    for (const deferred of logsOf(setup.context, 'job.confirm_installation.deferred')) {
      expect(deferred.runningJobId).toBe(dead);
    }
  }, 40_000);
});

describe('checks of other keys during a slow check', () => {
  it('runs another installation', async () => {
    const slow = setup.installationId;
    const other = slow + 100_000;
    await insertInstallation(setup.context, { id: slow });
    // GitHub reports the other installation active, so its check clears this mark.
    await insertInstallation(setup.context, { id: other, suspendedAt: new Date('2024-06-01T09:00:00Z') });
    setup.fake.setInstallation({ id: other, account: { login: owner, id: 1, type: 'Organization' } });
    holdResponses(installationPath, 'installation_id', String(slow));
    const slowCheck = await queueInstallationCheck(slow);
    await makeDue(slowCheck);

    await start();
    const read = await waitFor(() => requestsTo(`/app/installations/${slow}`).length === 1, 10_000);
    expect(read).toBeLessThan(10_000);
    const otherCheck = await queueInstallationCheck(other);
    await makeDue(otherCheck);
    const elapsed = await waitFor(async () => (await jobState(otherCheck)) === 'completed', 15_000);

    // A free worker polls the queue every second.
    expect(elapsed).toBeLessThan(5_000);
    expect(await suspendedAt(other)).toBeNull();
    expect(await jobState(slowCheck)).toBe('active');
    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      { jobId: otherCheck, status: 'corrected' },
    ]);
  }, 40_000);

  it('runs another pull request', async () => {
    const otherPrNumber = prNumber + 1;
    addSecondPullRequest(setup, otherPrNumber);
    holdResponses('/repos/:owner/:repo/pulls/:pull_number', 'pull_number', String(prNumber));
    const slowCheck = await queuePullRequestCheck(prNumber);
    await makeDue(slowCheck);

    await start();
    const read = await waitFor(() => requestsTo(`/repos/${repository}/pulls/${prNumber}`).length === 1, 10_000);
    expect(read).toBeLessThan(10_000);
    const otherCheck = await queuePullRequestCheck(otherPrNumber);
    await makeDue(otherCheck);
    const elapsed = await waitFor(async () => (await jobState(otherCheck)) === 'completed', 15_000);

    expect(elapsed).toBeLessThan(5_000);
    expect(requestsTo(`/repos/${repository}/pulls/${otherPrNumber}`)).toHaveLength(1);
    expect(await jobState(slowCheck)).toBe('active');
    // The other pull request has no run of its head commit yet, so its check requests one.
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { jobId: otherCheck, status: 'corrected' },
    ]);
  }, 40_000);
});

describe('two due checks of one installation', () => {
  it('let one read GitHub', async () => {
    const installationId = setup.installationId;
    await insertInstallation(setup.context, { id: installationId });
    // Each read takes 1 s, so two reads that the workers started together would overlap.
    let reading = 0;
    let maxReading = 0;
    wrapRoute('GET', installationPath, async () => {
      reading++;
      maxReading = Math.max(maxReading, reading);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      reading--;
    });
    // A failed check waits for its retry, and an event queued another check meanwhile. The
    // `short` policy allows both, because only one of them is `created`.
    const retried = await queueInstallationCheck(installationId);
    await makeDue(retried);
    const [fetched] = await setup.context.boss.fetch(confirmInstallationQueue);
    expect(fetched?.id).toBe(retried);
    await setup.context.boss.fail(confirmInstallationQueue, retried);
    const queued = await queueInstallationCheck(installationId);
    await makeDue(retried);
    await makeDue(queued);
    expect(await jobState(retried)).toBe('retry');

    await start();
    const ended = await waitFor(
      async () => (await jobState(retried)) === 'completed' && (await jobState(queued)) === 'completed',
      15_000,
    );

    expect(ended).toBeLessThan(15_000);
    const checks = [retried, queued];
    const deferred = logsOf(setup.context, 'job.confirm_installation.deferred').filter((line) =>
      checks.includes(line.jobId as string),
    );
    const completed = logsOf(setup.context, 'job.confirm_installation.completed').filter((line) =>
      checks.includes(line.jobId as string),
    );
    // Two workers took the checks at once, so at least one found the other running.
    expect(deferred.length).toBeGreaterThanOrEqual(1);
    expect(deferred.length + completed.length).toBe(2);
    expect(maxReading).toBeLessThanOrEqual(1);
    expect(requestsTo(`/app/installations/${installationId}`)).toHaveLength(completed.length);
  }, 40_000);
});

/**
 * Starts the workers with a due check of the fake's installation, whose GitHub response is held
 * back until `releases` run, and returns once the check has sent its request.
 */
async function startSlowCheck() {
  const installationId = setup.installationId;
  const key = String(installationId);
  await insertInstallation(setup.context, { id: installationId });
  holdResponses(installationPath, 'installation_id', key);
  const slowCheck = await queueInstallationCheck(installationId);
  await makeDue(slowCheck);
  await start();
  const read = await waitFor(() => requestsTo(`/app/installations/${installationId}`).length === 1, 10_000);
  expect(read).toBeLessThan(10_000);
  return { installationId, key, slowCheck };
}

describe('checks of a key during a slow check', () => {
  it('queue one check that waits', async () => {
    const { installationId, key, slowCheck } = await startSlowCheck();

    const deferredLogs = () => logsOf(setup.context, 'job.confirm_installation.deferred');
    // Events arrive every 250 ms for 4 s while the read is held. A queued check is made due
    // once its start is at most 10 s away, as if the event delay had passed.
    for (let event = 0; event < 16; event++) {
      await setup.context.db.transaction((tx) =>
        queueInstallationConfirmation(tx, setup.context.boss, installationId),
      );
      await setup.context.database.sql`
        UPDATE pgboss.job SET start_after = now()
        WHERE name = ${confirmInstallationQueue} AND singleton_key = ${key} AND state = 'created'
          AND start_after <= now() + interval '10 seconds'`;
      // The first event's check is taken and deferred before the next event arrives, however
      // slow the machine: an event during that check would queue a second one beside it.
      if (event === 0) expect(await waitFor(() => deferredLogs().length > 0, 10_000)).toBeLessThan(10_000);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }

    // The first event's check deferred, and every later event found the check it queued.
    const jobs = await listKeyedJobs(setup.context, confirmInstallationQueue, key);
    expect(jobs.map((job) => job.state)).toEqual(['active', 'completed', 'created']);
    expect(jobs[0]!.id).toBe(slowCheck);
    const waiting = jobs[2]!;
    expect(deferredLogs()).toHaveLength(1);
    expect(deferredLogs()[0]).toMatchObject({ jobId: jobs[1]!.id, runningJobId: slowCheck, nextJobId: waiting.id });
    // It starts at the latest 10 s after the slow check's 5-minute expiry.
    expect(waiting.waitMs).toBeGreaterThan(280_000);
    expect(waiting.waitMs).toBeLessThanOrEqual(310_000);
    expect(logsOf(setup.context, 'job.started', { queue: confirmInstallationQueue })).toHaveLength(2);

    for (const release of releases.splice(0)) release();
    const moved = await waitFor(async () => {
      const [, , current] = await listKeyedJobs(setup.context, confirmInstallationQueue, key);
      return (await jobState(slowCheck)) === 'completed' && current!.waitMs <= 10_000;
    }, 10_000);

    expect(moved).toBeLessThan(10_000);
    expect(logsOf(setup.context, 'jobs.deferred_check_moved')).toMatchObject([
      { jobId: waiting.id, endedJobId: slowCheck, queue: confirmInstallationQueue, delaySeconds: 10 },
    ]);
    // The slow check leaves the marks to the waiting check, which reads GitHub after it.
    expect(logsOf(setup.context, 'job.confirm_installation.completed', { jobId: slowCheck })).toMatchObject([
      { status: 'skipped' },
    ]);
    await makeDue(waiting.id);
    const ran = await waitFor(async () => (await jobState(waiting.id)) === 'completed', 10_000);
    expect(ran).toBeLessThan(10_000);
    expect(requestsTo(`/app/installations/${installationId}`)).toHaveLength(2);
    expect(logsOf(setup.context, 'job.confirm_installation.completed', { jobId: waiting.id })).toMatchObject([
      { status: 'unchanged' },
    ]);
  }, 40_000);
});

describe('check interrupted by a graceful stop', () => {
  it('is logged and moves up the waiting check', async () => {
    const { installationId, key, slowCheck } = await startSlowCheck();
    const eventCheck = await queueInstallationCheck(installationId);
    await makeDue(eventCheck);
    const deferred = await waitFor(
      () => logsOf(setup.context, 'job.confirm_installation.deferred', { jobId: eventCheck }).length === 1,
      5_000,
    );
    expect(deferred).toBeLessThan(5_000);
    const [, , waiting] = await listKeyedJobs(setup.context, confirmInstallationQueue, key);
    expect(waiting!.waitMs).toBeGreaterThan(60_000);

    // The service stops as it does on SIGTERM, with a 1 s grace period for running jobs.
    await setup.context.boss.stop({ graceful: true, wait: true, timeout: 1_000 });
    await workers!.close();
    workers = undefined;

    expect(logsOf(setup.context, 'jobs.interrupted')).toMatchObject([
      {
        jobId: slowCheck,
        queue: confirmInstallationQueue,
        attempt: 0,
        lastAttempt: false,
        releasedTokens: 0,
        msg: 'the service stopped during a check, which pg-boss retries',
      },
    ]);
    expect(await jobState(slowCheck)).toBe('retry');
    const [, , moved] = await listKeyedJobs(setup.context, confirmInstallationQueue, key);
    expect(moved!.id).toBe(waiting!.id);
    expect(moved!.state).toBe('created');
    expect(moved!.waitMs).toBeLessThanOrEqual(10_000);
    expect(logsOf(setup.context, 'jobs.deferred_check_moved')).toMatchObject([
      { jobId: waiting!.id, endedJobId: slowCheck },
    ]);
  }, 40_000);
});

describe('resume with the workers', () => {
  it('runs one resume of an installation at a time', async () => {
    await insertInstallation(setup.context, { id: setup.installationId });
    addSecondPullRequest(setup, 13);
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    releases.push(release);
    wrapRoute('GET', '/repos/:owner/:repo/pulls', async () => {
      await released;
    });
    const first = await queueResume();
    await start();
    const listing = `/repos/${repository}/pulls`;
    const held = await waitFor(() => requestsTo(listing).length === 1, 10_000);
    expect(held).toBeLessThan(10_000);

    const second = await queueResume();
    const deferred = await waitFor(
      () => logsOf(setup.context, 'job.resume_installation.deferred', { jobId: second }).length === 1,
      5_000,
    );
    expect(deferred).toBeLessThan(5_000);
    const [{ nextJobId: waiting }] = logsOf(setup.context, 'job.resume_installation.deferred') as [
      { nextJobId: string },
    ];
    release();

    // The first resume leaves the listing to the resume queued behind it, which starts over.
    const stopped = await waitFor(async () => (await jobState(first)) === 'completed', 10_000);
    expect(stopped).toBeLessThan(10_000);
    expect(logsOf(setup.context, 'job.resume_installation.stopped', { jobId: first })).toMatchObject([
      { reason: `check ${waiting} is queued and reads GitHub later`, checksQueued: 0 },
    ]);
    const moved = await waitFor(
      () => logsOf(setup.context, 'jobs.deferred_check_moved', { jobId: waiting }).length === 1,
      5_000,
    );
    expect(moved).toBeLessThan(5_000);
    expect(logsOf(setup.context, 'jobs.deferred_check_moved')).toMatchObject([
      { jobId: waiting, endedJobId: first, queue: resumeInstallationQueue, delaySeconds: 10 },
    ]);
    await makeDue(waiting);
    const ran = await waitFor(async () => (await jobState(waiting)) === 'completed', 10_000);
    expect(ran).toBeLessThan(10_000);
    expect(logsOf(setup.context, 'job.resume_installation.completed', { jobId: waiting })).toMatchObject([
      { repositories: 1, openPullRequests: 2, newPullRequests: 2, checksQueued: 2 },
    ]);
    expect(requestsTo(listing)).toHaveLength(2);
  }, 40_000);
});
