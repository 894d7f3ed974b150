// After a suspension ends, one job per installation lists its open pull requests from GitHub and
// queues a check of each, in small batches, so that a pull request opened during the suspension
// gets a run. These tests drive the webhook, the resume job and the checks against the fake
// GitHub with Octokit and a real PostgreSQL.
import { and, eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installations, prRuns, tokenEvents } from '../../src/db/schema/index.ts';
import { primaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import { handleConfirmPullRequestJob } from '../../src/jobs/confirm-pull-request.ts';
import {
  confirmPullRequestQueue,
  queuePullRequestConfirmation,
  type ConfirmPullRequestJobData,
} from '../../src/jobs/confirm-pull-request-queue.ts';
import { handleResumeInstallationJob } from '../../src/jobs/resume-installation.ts';
import {
  resumeDelaySeconds,
  resumeInstallationQueue,
  type ResumeInstallationJobData,
} from '../../src/jobs/resume-installation-queue.ts';
import { pagesPerResumeJob } from '../../src/jobs/resume-walk.ts';
import { createApp } from '../../src/web/app.tsx';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertUser,
  owner,
  prNumber,
  repo,
  repository,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { listKeyedJobs, runDueJob } from '../helpers/jobs.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'resume-installation-secret';
const pullsPath = '/repos/:owner/:repo/pulls';
/** A repository of the installation's account that Fixwright has stored nothing of. */
const gadgets = { repo: 'gadgets', id: 9090 };

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;

/** Builds the test context with GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS set to `maxWaitSeconds`. */
async function start(maxWaitSeconds = 3600) {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    env: { WEBHOOK_SECRET: secret, GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: String(maxWaitSeconds) },
  });
  app = createApp(setup.context);
  const user = await insertUser(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId, userId: user.id });
}

beforeEach(async () => {
  await start();
});

afterEach(async () => {
  await setup?.close();
});

/** Delivers GitHub's example `installation` payload of `action`, and sets the fake to match. */
async function installationEvent(action: 'suspend' | 'unsuspend'): Promise<string> {
  setup.fake.setInstallation({
    id: setup.installationId,
    account: { login: owner, id: 1, type: 'Organization' },
    suspended: action === 'suspend',
  });
  const response = await postSignedWebhook(app, {
    secret,
    event: 'installation',
    deliveryId: `resume-installation-${delivery++}`,
    payload: examplePayload('installation', action, setup.installationId),
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

/** Suspends the installation and ends the suspension, and returns the unsuspend's outcome. */
async function suspendAndResume(duringSuspension: () => void = () => {}): Promise<string> {
  await installationEvent('suspend');
  duringSuspension();
  return installationEvent('unsuspend');
}

/**
 * Adds open pull request `number` of `repoName` on the fake, with the head of `prNumber`, created
 * at `createdAt` (by default the fake's 2024-01-01T00:00:00Z).
 */
function addPullRequest(number: number, repoName = repo, createdAt?: string) {
  setup.fake.addPullRequest({
    owner,
    repo: repoName,
    number,
    baseSha: setup.git.baseSha,
    headSha: setup.git.headSha,
    headRef: headBranch,
    title: `Pull request ${number}`,
    ...(createdAt === undefined ? {} : { createdAt }),
  });
}

/** Adds a repository of the installation's account on the fake, with the test's git data. */
function addRepository(repoName: string, id: number, archived = false) {
  setup.fake.addRepository({ owner, repo: repoName, id, gitDir: setup.git.dir, archived });
}

/** Inserts a completed run of each of the pull requests `numbers` of the fake's repository. */
async function insertKnownRuns(numbers: number[] = [prNumber]) {
  return setup.context.db
    .insert(prRuns)
    .values(
      numbers.map((number) => ({
        installationId: setup.installationId,
        repositoryId,
        repository,
        prNumber: number,
        headSha: setup.git.headSha,
        baseSha: setup.git.baseSha,
        headRef: headBranch,
        headRepository: repository,
        status: 'completed' as const,
      })),
    )
    .returning();
}

/** Returns the numbers 1 to `count`. */
function numbersUpTo(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index + 1);
}

/** Lists the installation's resume jobs, oldest first. */
function resumeJobs() {
  return listKeyedJobs(setup.context, resumeInstallationQueue, String(setup.installationId));
}

/** Returns the id of the installation's one queued resume job. */
async function queuedResume(): Promise<string> {
  const queued = (await resumeJobs()).filter((job) => job.state === 'created');
  expect(queued).toHaveLength(1);
  return queued[0]!.id;
}

async function runResume(jobId: string): Promise<void> {
  await runDueJob<ResumeInstallationJobData>(setup.context, resumeInstallationQueue, jobId, (job) =>
    handleResumeInstallationJob(setup.context, job),
  );
}

/** Runs the installation's queued resume jobs until none is queued, and returns how many ran. */
async function runResumeToEnd(): Promise<number> {
  for (let ran = 0; ran < 20; ran += 1) {
    const queued = (await resumeJobs()).filter((job) => job.state === 'created');
    if (queued.length === 0) return ran;
    await runResume(queued[0]!.id);
  }
  throw new Error('the resume queued more than 20 jobs');
}

/** Lists the queued pull request checks, as `REPOSITORY_ID#NUMBER` keys in creation order. */
async function checkKeys(): Promise<string[]> {
  const rows = await setup.context.database.sql<{ key: string }[]>`
    SELECT singleton_key AS key FROM pgboss.job
    WHERE name = ${confirmPullRequestQueue} ORDER BY created_on, id`;
  return rows.map((row) => row.key);
}

/** Runs the queued check of pull request `number` of repository `id`. */
async function runCheck(id: number, number: number): Promise<void> {
  const [job] = await setup.context.database.sql<{ id: string }[]>`
    SELECT id FROM pgboss.job
    WHERE name = ${confirmPullRequestQueue} AND singleton_key = ${`${id}#${number}`}
      AND state = 'created'`;
  expect(job).toBeDefined();
  await runDueJob<ConfirmPullRequestJobData>(setup.context, confirmPullRequestQueue, job!.id, (row) =>
    handleConfirmPullRequestJob(setup.context, row),
  );
}

async function runsOf(id: number, number: number) {
  return setup.context.db
    .select()
    .from(prRuns)
    .where(and(eq(prRuns.repositoryId, id), eq(prRuns.prNumber, number)));
}

/** Returns the listing requests that the fake received, as `PATH?page=N`. */
function listingRequests(): string[] {
  return setup.fake.requests
    .filter((request) => request.path === '/installation/repositories' || /\/pulls$/.test(request.path))
    .map((request) => `${request.path}?page=${request.query.page}`);
}

/** Sets `suspended_at` on the installation's row, as a token request that GitHub rejects does. */
async function markSuspended() {
  await setup.context.db
    .update(installations)
    .set({ suspendedAt: new Date() })
    .where(eq(installations.id, setup.installationId));
}

describe('unsuspend webhook', () => {
  it('queues one resume job and no checks', async () => {
    // Many pull requests with runs: the delivery's transaction must not grow with them.
    await insertKnownRuns(numbersUpTo(250));

    const outcome = await suspendAndResume();

    expect(outcome).toBe(
      `installation ${setup.installationId} resumed; queued a check of its open pull requests with GitHub`,
    );
    const jobs = await resumeJobs();
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.state).toBe('created');
    expect(jobs[0]!.delayMs).toBeGreaterThanOrEqual(resumeDelaySeconds * 1000 - 1000);
    expect(jobs[0]!.delayMs).toBeLessThanOrEqual(resumeDelaySeconds * 1000 + 1000);
    expect(await checkKeys()).toEqual([]);
    expect(listingRequests()).toEqual([]);
  });

  it('keeps a queued resume on a second unsuspend', async () => {
    await suspendAndResume();
    const first = await queuedResume();

    const again = await installationEvent('unsuspend');

    expect(again).toBe(
      `installation ${setup.installationId} resumed; a check of its open pull requests with ` +
        'GitHub is queued already',
    );
    expect((await resumeJobs()).map((job) => job.id)).toEqual([first]);
  });
});

describe('resume job', () => {
  it('checks known pull requests in batches', async () => {
    await insertKnownRuns(numbersUpTo(250));
    await suspendAndResume();

    await runResume(await queuedResume());

    const keys = await checkKeys();
    expect(keys).toHaveLength(250);
    expect(new Set(keys)).toEqual(new Set(numbersUpTo(250).map((number) => `${repositoryId}#${number}`)));
    // pg-boss stamps a job with its transaction's start, so each batch has a time of its own.
    const [batches] = await setup.context.database.sql<{ count: number }[]>`
      SELECT count(DISTINCT created_on)::int AS count FROM pgboss.job
      WHERE name = ${confirmPullRequestQueue}`;
    expect(batches!.count).toBe(3);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      {
        knownPullRequests: 250,
        repositories: 1,
        openPullRequests: 1,
        newPullRequests: 0,
        checksQueued: 250,
        checksQueuedAlready: 0,
      },
    ]);
  });

  it('gets a run for a pull request opened during the suspension', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => {
      // GitHub sends no webhook events to a suspended installation, so neither arrives.
      addPullRequest(13);
      addRepository(gadgets.repo, gadgets.id);
      addPullRequest(1, gadgets.repo);
    });

    await runResume(await queuedResume());

    expect(await checkKeys()).toEqual([
      `${repositoryId}#${prNumber}`,
      `${repositoryId}#13`,
      `${gadgets.id}#1`,
    ]);
    expect(listingRequests()).toEqual([
      '/installation/repositories?page=1',
      `/repos/${owner}/${repo}/pulls?page=1`,
      `/repos/${owner}/${gadgets.repo}/pulls?page=1`,
    ]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      {
        knownPullRequests: 1,
        repositories: 2,
        openPullRequests: 3,
        newPullRequests: 2,
        checksQueued: 3,
        checksQueuedAlready: 0,
      },
    ]);

    await runCheck(repositoryId, 13);
    await runCheck(gadgets.id, 1);

    const [opened] = await runsOf(repositoryId, 13);
    expect(opened?.status).toBe('queued');
    expect(opened?.headSha).toBe(setup.git.headSha);
    expect(opened?.repository).toBe(repository);
    expect((await setup.context.boss.getJobById(analyzeQueue, opened!.analyzeJobId!))?.state).toBe(
      'created',
    );
    // A repository that Fixwright had stored nothing of gets its run the same way.
    const [unstored] = await runsOf(gadgets.id, 1);
    expect(unstored?.status).toBe('queued');
    expect(unstored?.repository).toBe(`${owner}/${gadgets.repo}`);
    expect(unstored?.installationId).toBe(setup.installationId);
    expect(unstored?.headRef).toBe(headBranch);
  });

  it('skips archived repositories', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => {
      addPullRequest(13);
      addRepository(gadgets.repo, gadgets.id, true);
      addPullRequest(1, gadgets.repo);
    });

    await runResume(await queuedResume());

    expect(await checkKeys()).toEqual([`${repositoryId}#${prNumber}`, `${repositoryId}#13`]);
    expect(listingRequests()).toEqual([
      '/installation/repositories?page=1',
      `/repos/${owner}/${repo}/pulls?page=1`,
    ]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      {
        knownPullRequests: 1,
        repositories: 1,
        archivedRepositories: 1,
        openPullRequests: 2,
        newPullRequests: 1,
        checksQueued: 2,
      },
    ]);
  });

  it('checks a known pull request closed on GitHub', async () => {
    const [known] = await insertKnownRuns();
    await suspendAndResume(() => {
      setup.fake.updatePullRequest(
        { owner, repo, number: prNumber },
        { state: 'closed', closedAt: '2024-06-01T10:00:00Z' },
      );
    });

    await runResume(await queuedResume());
    expect(await checkKeys()).toEqual([`${repositoryId}#${prNumber}`]);
    await runCheck(repositoryId, prNumber);

    const [run] = await runsOf(repositoryId, prNumber);
    expect(run?.id).toBe(known!.id);
    expect(run?.prClosedAt?.toISOString()).toBe('2024-06-01T10:00:00.000Z');
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { knownPullRequests: 1, openPullRequests: 0, newPullRequests: 0, checksQueued: 1 },
    ]);
  });

  it('reads every page of open pull requests', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => {
      for (let number = 100; number < 250; number += 1) addPullRequest(number);
    });

    await runResume(await queuedResume());

    const keys = await checkKeys();
    expect(keys).toHaveLength(151);
    expect(new Set(keys).size).toBe(151);
    expect(keys).toContain(`${repositoryId}#100`);
    expect(keys).toContain(`${repositoryId}#249`);
    // Page 2 starts with a pull request not queued, so page 1 is read again, because closes
    // could have moved pull requests not queued there.
    expect(listingRequests()).toEqual([
      '/installation/repositories?page=1',
      `/repos/${owner}/${repo}/pulls?page=1`,
      `/repos/${owner}/${repo}/pulls?page=2`,
      `/repos/${owner}/${repo}/pulls?page=1`,
    ]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { repositories: 1, openPullRequests: 151, newPullRequests: 150, checksQueued: 151 },
    ]);
  });

  it('continues in new jobs across repository pages', async () => {
    // 101 repositories take two pages, and their listings more pages than one job reads.
    const extra = 100;
    await suspendAndResume(() => {
      for (let index = 1; index <= extra; index += 1) {
        addRepository(`repo-${index}`, 10_000 + index);
        addPullRequest(1, `repo-${index}`);
      }
    });

    const jobsRun = await runResumeToEnd();

    // Each job reads the page of repositories it continues on again: 1 + 49 listings, 1 + 49
    // more, then 1 + 2, and pages 2 and 1 of repositories for the one repository of page 2.
    expect(pagesPerResumeJob).toBe(50);
    expect(jobsRun).toBe(3);
    const keys = await checkKeys();
    expect(keys).toHaveLength(extra + 1);
    expect(new Set(keys).size).toBe(extra + 1);
    expect(keys).toContain(`${repositoryId}#${prNumber}`);
    expect(keys).toContain(`${10_000 + extra}#1`);
    expect(logsOf(setup.context, 'job.resume_installation.continued')).toHaveLength(jobsRun - 1);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { repositories: extra + 1, openPullRequests: extra + 1, checksQueued: extra + 1 },
    ]);
    const repositoryPages = listingRequests().filter((path) => path.startsWith('/installation/'));
    expect(repositoryPages).toEqual([
      '/installation/repositories?page=1',
      '/installation/repositories?page=1',
      '/installation/repositories?page=1',
      '/installation/repositories?page=2',
      '/installation/repositories?page=1',
    ]);
  });

  it('does not check twice when repeated', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    await runResume(await queuedResume());
    const firstKeys = await checkKeys();

    // A second unsuspend while the checks are still queued.
    await installationEvent('unsuspend');
    await runResume(await queuedResume());

    expect(await checkKeys()).toEqual(firstKeys);
    expect(logsOf(setup.context, 'job.resume_installation.completed').at(-1)).toMatchObject({
      checksQueued: 0,
      checksQueuedAlready: 2,
    });
  });
});

describe('resume continuation', () => {
  /** Adds repositories repo-1 to repo-`count`, each with open pull request 1. */
  function addRepositories(count: number) {
    for (let index = 1; index <= count; index += 1) {
      addRepository(`repo-${index}`, 10_000 + index);
      addPullRequest(1, `repo-${index}`);
    }
  }

  /** Returns the check keys of widgets' pull request `prNumber` and of repo-1 to repo-`count`. */
  function repositoryKeys(count: number): string[] {
    const keys = [`${repositoryId}#${prNumber}`];
    for (let index = 1; index <= count; index += 1) keys.push(`${10_000 + index}#1`);
    return keys;
  }

  it('skips no repository after removals', async () => {
    // 101 repositories take two pages, and the first job lists 49 of page 1.
    await suspendAndResume(() => addRepositories(100));
    await runResume(await queuedResume());
    expect(await checkKeys()).toEqual(repositoryKeys(48));

    // Removing 5 listed repositories moves each later one 5 places earlier.
    for (let index = 1; index <= 5; index += 1) {
      setup.fake.removeRepository({ owner, repo: `repo-${index}` });
    }
    await runResumeToEnd();

    const keys = await checkKeys();
    expect(keys).toHaveLength(101);
    expect(new Set(keys)).toEqual(new Set(repositoryKeys(100)));
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { repositories: 101, openPullRequests: 101, checksQueued: 101 },
    ]);
  });

  it('skips no repository moved back a page', async () => {
    // 103 repositories take two pages. Removals before the second page is read move its
    // repositories to the first.
    await suspendAndResume(() => addRepositories(102));
    const list = defaultRoutes.find(
      (route) => route.method === 'GET' && route.pattern === '/installation/repositories',
    )!;
    let removed = false;
    setup.fake.addRoute({
      ...list,
      async handle(context) {
        if (context.url.searchParams.get('page') === '2' && !removed) {
          removed = true;
          for (let index = 1; index <= 3; index += 1) {
            setup.fake.removeRepository({ owner, repo: `repo-${index}` });
          }
        }
        return list.handle(context);
      },
    });

    await runResumeToEnd();

    expect(removed).toBe(true);
    const keys = await checkKeys();
    expect(keys).toHaveLength(103);
    expect(new Set(keys)).toEqual(new Set(repositoryKeys(102)));
  });

  it('skips no pull request after closes', async () => {
    await insertKnownRuns();
    // 151 open pull requests take two pages, oldest first: 12, then 100 to 249.
    const createdAt = (number: number) =>
      new Date(Date.UTC(2024, 1, 1) + number * 60_000).toISOString().replace('.000Z', 'Z');
    await suspendAndResume(() => {
      for (let number = 100; number < 250; number += 1) addPullRequest(number, repo, createdAt(number));
    });
    // GitHub rate-limits the read of page 2, so a new job continues from it.
    const list = defaultRoutes.find((route) => route.method === 'GET' && route.pattern === pullsPath)!;
    let limited = false;
    setup.fake.addRoute({
      ...list,
      async handle(context) {
        if (!limited) {
          limited = true;
          const resetSeconds = Math.floor(Date.now() / 1000) + 600;
          setup.fake.queueResponse(primaryRateLimitError('GET', pullsPath, resetSeconds));
        }
        return list.handle(context);
      },
    });
    await runResume(await queuedResume());
    expect(await checkKeys()).toHaveLength(100);

    // Closing pull requests of page 1 moves 199 to 208 from page 2 to page 1.
    for (let number = 100; number < 110; number += 1) {
      setup.fake.updatePullRequest({ owner, repo, number }, { state: 'closed' });
    }
    await runResumeToEnd();

    const keys = await checkKeys();
    expect(keys).toHaveLength(151);
    const expected = [prNumber, ...Array.from({ length: 150 }, (_, index) => 100 + index)];
    expect(new Set(keys)).toEqual(new Set(expected.map((number) => `${repositoryId}#${number}`)));
    expect(listingRequests().filter((path) => path.includes('/pulls'))).toEqual([
      `/repos/${owner}/${repo}/pulls?page=1`,
      `/repos/${owner}/${repo}/pulls?page=2`,
      `/repos/${owner}/${repo}/pulls?page=2`,
      `/repos/${owner}/${repo}/pulls?page=1`,
    ]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { openPullRequests: 151, newPullRequests: 150, checksQueued: 151 },
    ]);
  });

  it('continues progress stored by page and index', async () => {
    await suspendAndResume(() => addPullRequest(13));
    const jobId = await queuedResume();
    // The progress that an earlier version stored, by page and index and without
    // archivedRepositories.
    const paged = {
      lastKnown: null,
      knownDone: true,
      repositoryPage: 1,
      repositoryIndex: 0,
      pullRequestPage: 1,
      counts: {
        knownPullRequests: 7,
        repositories: 0,
        openPullRequests: 0,
        newPullRequests: 0,
        checksQueued: 7,
        checksQueuedAlready: 0,
      },
    };
    await setup.context.database.sql`
      UPDATE pgboss.job
      SET data = ${JSON.stringify({ installationId: setup.installationId, progress: paged })}::jsonb
      WHERE name = ${resumeInstallationQueue} AND id = ${jobId}`;

    await runResume(jobId);

    // One batch queues both checks, so their order is not known.
    expect((await checkKeys()).sort()).toEqual([`${repositoryId}#${prNumber}`, `${repositoryId}#13`]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      {
        knownPullRequests: 7,
        repositories: 1,
        archivedRepositories: 0,
        openPullRequests: 2,
        checksQueued: 9,
      },
    ]);
  });
});

describe('resume stops', () => {
  it('when suspended before it runs', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    const jobId = await queuedResume();

    const suspended = await installationEvent('suspend');

    expect(suspended).toMatch(/marked suspended; cancelled .* and 1 resume job\(s\)$/);
    expect((await setup.context.boss.getJobById(resumeInstallationQueue, jobId))?.state).toBe(
      'cancelled',
    );
    expect(await checkKeys()).toEqual([]);
  });

  it('when marked suspended before it runs', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    await markSuspended();

    await runResume(await queuedResume());

    expect(await checkKeys()).toEqual([]);
    expect(listingRequests()).toEqual([]);
    expect(logsOf(setup.context, 'job.resume_installation.stopped')).toMatchObject([
      { reason: 'installation suspended', checksQueued: 0 },
    ]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toEqual([]);
  });

  it('when suspended during the listing', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    const list = defaultRoutes.find((route) => route.method === 'GET' && route.pattern === pullsPath)!;
    setup.fake.addRoute({
      ...list,
      async handle(context) {
        await markSuspended();
        return list.handle(context);
      },
    });

    await runResume(await queuedResume());

    // The known pull request was queued before the suspension, the new one was not.
    expect(await checkKeys()).toEqual([`${repositoryId}#${prNumber}`]);
    expect(logsOf(setup.context, 'job.resume_installation.stopped')).toMatchObject([
      { reason: 'installation suspended', knownPullRequests: 1, openPullRequests: 0 },
    ]);
  });

  it('when the installation is deleted', async () => {
    await suspendAndResume(() => addPullRequest(13));
    await setup.context.db
      .update(installations)
      .set({ deletedAt: new Date() })
      .where(eq(installations.id, setup.installationId));

    await runResume(await queuedResume());

    expect(await checkKeys()).toEqual([]);
    expect(logsOf(setup.context, 'job.resume_installation.stopped')).toMatchObject([
      { reason: 'installation deleted' },
    ]);
  });

  it('when GitHub reports the installation suspended', async () => {
    await suspendAndResume(() => addPullRequest(13));
    // GitHub suspended it again, and its event has not arrived.
    setup.fake.setInstallation({
      id: setup.installationId,
      account: { login: owner, id: 1, type: 'Organization' },
      suspended: true,
    });

    await runResume(await queuedResume());

    expect(await checkKeys()).toEqual([]);
    const [row] = await setup.context.db
      .select()
      .from(installations)
      .where(eq(installations.id, setup.installationId));
    expect(row!.suspendedAt).not.toBeNull();
    expect(logsOf(setup.context, 'job.resume_installation.stopped')).toHaveLength(1);
  });
});

describe('resume checks', () => {
  /** Lists the pull request checks as `REPOSITORY_ID#NUMBER STATE`, in creation order. */
  async function checkStates(): Promise<string[]> {
    const rows = await setup.context.database.sql<{ key: string; state: string }[]>`
      SELECT singleton_key AS key, state::text AS state FROM pgboss.job
      WHERE name = ${confirmPullRequestQueue} ORDER BY created_on, id`;
    return rows.map((row) => `${row.key} ${row.state}`);
  }

  /** Queues a check of a pull request of another installation, which must stay queued. */
  async function queueOtherInstallationCheck() {
    await setup.context.db.transaction((tx) =>
      queuePullRequestConfirmation(tx, setup.context.boss, {
        installationId: setup.installationId + 1000,
        repositoryId: 7070,
        repository: 'other-org/tools',
        prNumber: 1,
      }),
    );
  }

  it('are cancelled by a suspend', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    await runResume(await queuedResume());
    await queueOtherInstallationCheck();

    const suspended = await installationEvent('suspend');

    expect(suspended).toMatch(/^installation \d+ marked suspended; cancelled .* and 2 pull request check\(s\)$/);
    expect(await checkStates()).toEqual([
      `${repositoryId}#${prNumber} cancelled`,
      `${repositoryId}#13 cancelled`,
      '7070#1 created',
    ]);

    // The resume after the next unsuspend queues them again.
    await installationEvent('unsuspend');
    await runResume(await queuedResume());

    expect((await checkStates()).slice(3)).toEqual([
      `${repositoryId}#${prNumber} created`,
      `${repositoryId}#13 created`,
    ]);
  });

  it('are cancelled by an uninstall', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    await runResume(await queuedResume());
    await queueOtherInstallationCheck();
    setup.fake.removeInstallation(setup.installationId);

    const response = await postSignedWebhook(app, {
      secret,
      event: 'installation',
      deliveryId: `resume-installation-${delivery++}`,
      payload: examplePayload('installation', 'deleted', setup.installationId),
    });

    expect(response.status).toBe(202);
    const { outcome } = (await response.json()) as { outcome: string };
    expect(outcome).toMatch(/^installation \d+ marked deleted; cancelled .* and 2 pull request check\(s\)$/);
    expect(await checkStates()).toEqual([
      `${repositoryId}#${prNumber} cancelled`,
      `${repositoryId}#13 cancelled`,
      '7070#1 created',
    ]);
  });

  it('skip without GitHub when marked suspended', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    await runResume(await queuedResume());
    // A rejected token request sets the mark without cancelling the queued checks.
    await markSuspended();
    const requestsBefore = setup.fake.requests.length;

    await runCheck(repositoryId, 13);

    expect(setup.fake.requests.slice(requestsBefore)).toEqual([]);
    expect(await runsOf(repositoryId, 13)).toEqual([]);
    expect(await checkStates()).toEqual([
      `${repositoryId}#${prNumber} created`,
      `${repositoryId}#13 completed`,
    ]);
    expect(logsOf(setup.context, 'job.confirm_pull_request.skipped')).toMatchObject([
      { prNumber: 13, reason: 'suspended' },
    ]);
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toEqual([]);
    expect(await setup.context.db.select().from(tokenEvents)).toEqual([]);
  });
});

describe('resume rate limit', () => {
  it('continues when the limit lifts', async () => {
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    const resetSeconds = Math.floor(Date.now() / 1000) + 600;
    setup.fake.queueResponse(primaryRateLimitError('GET', pullsPath, resetSeconds));
    const first = await queuedResume();

    await runResume(first);

    // The known pull request was queued before the limit, and stays queued once.
    expect(await checkKeys()).toEqual([`${repositoryId}#${prNumber}`]);
    expect((await setup.context.boss.getJobById(resumeInstallationQueue, first))?.state).toBe(
      'completed',
    );
    const [next] = await setup.context.database.sql<
      { id: string; data: ResumeInstallationJobData; start_after: string }[]
    >`
      SELECT id, data, start_after FROM pgboss.job
      WHERE name = ${resumeInstallationQueue} AND state = 'created'`;
    expect(next).toBeDefined();
    expect(new Date(next!.start_after).getTime()).toBe((resetSeconds + 1) * 1000);
    expect(next!.data.progress).toMatchObject({
      knownDone: true,
      repositoryPage: 1,
      repositoriesDone: [],
      repository: {
        id: repositoryId,
        fullName: repository,
        pullRequests: { page: 1, createdAt: null, numbers: [] },
      },
      counts: { knownPullRequests: 1, checksQueued: 1 },
    });
    expect(next!.data.rateLimitedSince).toBeGreaterThan(Date.now() - 60_000);
    expect(logsOf(setup.context, 'job.resume_installation.rate_limited')).toMatchObject([
      { rateLimit: 'primary', liftsAt: new Date((resetSeconds + 1) * 1000).toISOString(), nextJobId: next!.id },
    ]);

    await runResume(next!.id);

    expect(await checkKeys()).toEqual([`${repositoryId}#${prNumber}`, `${repositoryId}#13`]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { knownPullRequests: 1, openPullRequests: 2, newPullRequests: 1, checksQueued: 2 },
    ]);
  });

  it('retries from the last batch past the maximum wait', async () => {
    await setup.close();
    await start(60);
    await insertKnownRuns();
    await suspendAndResume(() => addPullRequest(13));
    setup.fake.queueResponse(primaryRateLimitError('GET', pullsPath, Math.floor(Date.now() / 1000) + 600));
    const jobId = await queuedResume();

    await expect(runResume(jobId)).rejects.toThrow(/rate limit/i);

    const job = await setup.context.boss.getJobById<ResumeInstallationJobData>(resumeInstallationQueue, jobId);
    expect(job?.state).toBe('retry');
    expect(job?.data.progress).toMatchObject({ knownDone: true, counts: { checksQueued: 1 } });
    expect(logsOf(setup.context, 'job.resume_installation.rate_limit_too_long')).toHaveLength(1);
    expect(logsOf(setup.context, 'job.resume_installation.failed')).toMatchObject([
      { attempt: 0, finalAttempt: false, rateLimit: 'primary' },
    ]);

    // pg-boss's retry continues from the progress stored with the known pull request.
    await runResume(jobId);

    expect(await checkKeys()).toEqual([`${repositoryId}#${prNumber}`, `${repositoryId}#13`]);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { knownPullRequests: 1, newPullRequests: 1, checksQueued: 2 },
    ]);
  });
});
