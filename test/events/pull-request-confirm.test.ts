// Pull request events whose times fall in the same second as the stored state cannot be ordered
// by those times. So a change of the closed mark or the base branch also queues a check with
// GitHub, which sets both to what GitHub reports.
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import { handleConfirmPullRequestJob } from '../../src/jobs/confirm-pull-request.ts';
import {
  confirmPullRequestDelaySeconds,
  confirmPullRequestQueue,
  queuePullRequestConfirmation,
  type ConfirmPullRequestJobData,
} from '../../src/jobs/confirm-pull-request-queue.ts';
import { createApp } from '../../src/web/app.tsx';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  owner,
  prNumber,
  repo,
  repository,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { keyedQueue } from '../helpers/jobs.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'pull-request-confirm-secret';
const pullPath = '/repos/:owner/:repo/pulls/:pull_number';
/** The second in which the tied events happen. */
const tie = '2024-06-01T09:05:00Z';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    env: { WEBHOOK_SECRET: secret },
  });
  // As after its `installation.created` event, so the events queue no installation check.
  await insertInstallation(setup.context, { id: setup.installationId });
  app = createApp(setup.context);
});

afterEach(async () => {
  await setup?.close();
});

/**
 * Returns GitHub's example `pull_request` payload of `action` for the fake's pull request at
 * its head commit, based on `baseRef`, with `updated_at` (and `closed_at` for a close) `at`.
 */
function pullRequestEvent(action: string, at: string, baseRef = 'main'): Record<string, any> {
  const payload = examplePayload('pull_request', action, setup.installationId);
  payload.number = prNumber;
  payload.repository.id = repositoryId;
  payload.repository.full_name = repository;
  payload.pull_request.number = prNumber;
  payload.pull_request.head.sha = setup.git.headSha;
  payload.pull_request.head.ref = headBranch;
  payload.pull_request.head.repo.full_name = repository;
  payload.pull_request.base.ref = baseRef;
  payload.pull_request.base.sha = setup.git.baseSha;
  payload.pull_request.updated_at = at;
  payload.pull_request.state = action === 'closed' ? 'closed' : 'open';
  payload.pull_request.closed_at = action === 'closed' ? at : null;
  return payload;
}

/**
 * Returns the `edited` payload of a base change from `from` to `to`. The example package has no
 * `edited` pull request payload, so the `opened` one gets the `changes.base` object that GitHub
 * documents.
 */
function baseChangeEvent(from: string, to: string, at: string): Record<string, any> {
  const payload = pullRequestEvent('opened', at, to);
  payload.action = 'edited';
  payload.changes = { base: { ref: { from }, sha: { from: setup.git.baseSha } } };
  return payload;
}

/** Posts a signed `pull_request` webhook and returns its recorded outcome. */
async function deliver(payload: Record<string, unknown>): Promise<string> {
  const response = await postSignedWebhook(app, {
    secret,
    event: 'pull_request',
    deliveryId: `pull-request-confirm-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

/** Sets the fake's pull request to what GitHub reports after the events. */
function setGitHubPullRequest(changes: {
  closedAt?: string | null;
  baseRef?: string;
  updatedAt: string;
}) {
  const closed = changes.closedAt !== undefined && changes.closedAt !== null;
  setup.fake.updatePullRequest(
    { owner, repo, number: prNumber },
    { ...changes, state: closed ? 'closed' : 'open', closedAt: changes.closedAt ?? null },
  );
}

async function currentRun() {
  const [run] = await setup.context.db
    .select()
    .from(prRuns)
    .where(eq(prRuns.headSha, setup.git.headSha));
  return run!;
}

/** The pull request's check jobs. */
const checks = keyedQueue<ConfirmPullRequestJobData>({
  context: () => setup.context,
  queue: confirmPullRequestQueue,
  key: () => `${repositoryId}#${prNumber}`,
  handle: handleConfirmPullRequestJob,
});

function pullRequestReads() {
  return setup.fake.requests.filter(
    (request) =>
      request.method === 'GET' && request.path === `/repos/${repository}/pulls/${prNumber}`,
  );
}

/** Opens the pull request, then delivers a reopen and a close of the same second in that order. */
async function reopenThenClose() {
  expect(await deliver(pullRequestEvent('opened', '2024-06-01T09:00:00Z'))).toMatch(/queued$/);
  expect(await deliver(pullRequestEvent('reopened', tie))).toMatch(/marked 0 run\(s\) open/);
  expect(await deliver(pullRequestEvent('closed', tie))).toMatch(
    /^pull request closed: marked 1 run/,
  );
  const run = await currentRun();
  expect(run.prClosedAt?.toISOString()).toBe('2024-06-01T09:05:00.000Z');
  expect(run.status).toBe('cancelled');
  return run;
}

describe('closed and reopened in the same second', () => {
  it('reopen then close ends open', async () => {
    const closed = await reopenThenClose();
    setGitHubPullRequest({ updatedAt: tie });
    const [queued] = await checks.jobs();
    expect(queued!.delayMs).toBeGreaterThanOrEqual(confirmPullRequestDelaySeconds * 1000 - 1000);
    expect(queued!.delayMs).toBeLessThanOrEqual(confirmPullRequestDelaySeconds * 1000 + 1000);

    await checks.run(await checks.queued());

    const run = await currentRun();
    expect(run.id).toBe(closed.id);
    expect(run.prClosedAt).toBeNull();
    expect(run.status).toBe('queued');
    expect(run.analyzeJobId).not.toBe(closed.analyzeJobId);
    expect((await setup.context.boss.getJobById(analyzeQueue, run.analyzeJobId!))?.state).toBe(
      'created',
    );
    expect(pullRequestReads()).toHaveLength(1);
    expect(pullRequestReads()[0]!.headers.authorization).toMatch(/^token ghs_/i);
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { github: 'open', status: 'corrected', outcomes: [`reopened: run ${run.id} queued again`] },
    ]);
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed']);
  });

  it('close then reopen ends closed', async () => {
    await deliver(pullRequestEvent('opened', '2024-06-01T09:00:00Z'));
    await deliver(pullRequestEvent('closed', tie));
    expect(await deliver(pullRequestEvent('reopened', tie))).toMatch(/queued again$/);
    expect((await currentRun()).prClosedAt).toBeNull();
    // The arrival order does not show the order on GitHub: here the reopen came first.
    setGitHubPullRequest({ closedAt: tie, updatedAt: tie });

    await checks.run(await checks.queued());

    const run = await currentRun();
    expect(run.prClosedAt?.toISOString()).toBe('2024-06-01T09:05:00.000Z');
    expect(run.status).toBe('cancelled');
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { github: 'closed', status: 'corrected' },
    ]);
  });

  it('close then reopen stays open', async () => {
    await deliver(pullRequestEvent('opened', '2024-06-01T09:00:00Z'));
    await deliver(pullRequestEvent('closed', tie));
    await deliver(pullRequestEvent('reopened', tie));
    const reopened = await currentRun();
    setGitHubPullRequest({ updatedAt: tie });

    await checks.run(await checks.queued());

    const run = await currentRun();
    expect(run.prClosedAt).toBeNull();
    expect(run.analyzeJobId).toBe(reopened.analyzeJobId);
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { github: 'open', status: 'unchanged' },
    ]);
  });

  it('first run from reopen ends open', async () => {
    // No run before the reopen, as for a pull request opened before the app was installed.
    expect(await deliver(pullRequestEvent('reopened', tie))).toMatch(/^run .* queued$/);
    expect(await deliver(pullRequestEvent('closed', tie))).toMatch(
      /^pull request closed: marked 1 run/,
    );
    expect((await currentRun()).prClosedAt?.toISOString()).toBe('2024-06-01T09:05:00.000Z');
    // On GitHub the close came first.
    setGitHubPullRequest({ updatedAt: tie });

    await checks.run(await checks.queued());

    const run = await currentRun();
    expect(run.prClosedAt).toBeNull();
    expect(run.status).toBe('queued');
  });

  it('queues one check for a burst', async () => {
    await reopenThenClose();
    await deliver(pullRequestEvent('reopened', tie));
    await deliver(pullRequestEvent('closed', tie));

    expect((await checks.jobs()).map((job) => job.state)).toEqual(['created']);
  });
});

describe('events in different seconds', () => {
  it('queue no check', async () => {
    await deliver(pullRequestEvent('opened', '2024-06-01T09:00:00Z'));
    await deliver(pullRequestEvent('reopened', '2024-06-01T09:05:01Z'));
    await deliver(pullRequestEvent('closed', '2024-06-01T09:05:00Z'));
    await deliver(pullRequestEvent('closed', '2024-06-01T09:06:00Z'));
    await deliver(pullRequestEvent('reopened', '2024-06-01T09:06:01Z'));
    await deliver(baseChangeEvent('main', 'develop', '2024-06-01T09:07:00Z'));
    await deliver(baseChangeEvent('develop', 'release', '2024-06-01T09:07:01Z'));

    const run = await currentRun();
    expect(run.prClosedAt).toBeNull();
    expect(run.baseRef).toBe('release');
    expect(await checks.jobs()).toEqual([]);
    expect(logsOf(setup.context, 'pull_request.unconfirmed')).toEqual([]);
  });

  it('ignore a close in the second of the open', async () => {
    await deliver(pullRequestEvent('opened', tie));
    await deliver(pullRequestEvent('closed', tie));

    expect((await currentRun()).prClosedAt?.toISOString()).toBe('2024-06-01T09:05:00.000Z');
    expect(await checks.jobs()).toEqual([]);
  });
});

describe('base changes in the same second', () => {
  it('reversed delivery ends on GitHub base', async () => {
    await deliver(pullRequestEvent('opened', '2024-06-01T09:00:00Z'));
    // On GitHub main → develop, then develop → release, both at 09:05:00.
    expect(await deliver(baseChangeEvent('develop', 'release', tie))).toMatch(
      /queued again: the base changed from develop to release/,
    );
    expect(await checks.jobs()).toEqual([]);
    expect(await deliver(baseChangeEvent('main', 'develop', tie))).toMatch(
      /queued again: the base changed from main to develop/,
    );
    const wrong = await currentRun();
    expect(wrong.baseRef).toBe('develop');
    setGitHubPullRequest({ baseRef: 'release', updatedAt: tie });

    await checks.run(await checks.queued());

    const run = await currentRun();
    expect(run.baseRef).toBe('release');
    expect(run.status).toBe('queued');
    expect(run.analyzeJobId).not.toBe(wrong.analyzeJobId);
    expect((await setup.context.boss.getJobById(analyzeQueue, wrong.analyzeJobId!))?.state).toBe(
      'cancelled',
    );
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      {
        github: 'open',
        status: 'corrected',
        outcomes: [
          expect.stringMatching(/^edited: run .* the base changed from develop to release/),
        ],
      },
    ]);
  });
});

describe('pull request check failures', () => {
  it('retries a GitHub server error', async () => {
    await reopenThenClose();
    setGitHubPullRequest({ updatedAt: tie });
    const jobId = await checks.queued();
    setup.fake.queueResponse({ method: 'GET', path: pullPath, status: 502 });

    const failed = await checks.run(jobId).catch((error: unknown) => error);

    expect((failed as { status?: number }).status).toBe(502);
    // One request: the job's retries replace Octokit's.
    expect(pullRequestReads()).toHaveLength(1);
    expect((await currentRun()).prClosedAt).not.toBeNull();
    expect((await currentRun()).status).toBe('cancelled');
    const [retry] = await checks.jobs();
    expect(retry!.state).toBe('retry');
    // The first retry waits 15 to 30 s.
    expect(retry!.waitMs).toBeGreaterThan(10_000);
    expect(logsOf(setup.context, 'job.confirm_pull_request.failed')).toMatchObject([
      { level: 50, attempt: 0, finalAttempt: false, err: { status: 502 } },
    ]);

    await checks.run(jobId);

    expect((await currentRun()).prClosedAt).toBeNull();
    expect((await currentRun()).status).toBe('queued');
    expect(pullRequestReads()).toHaveLength(2);
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed']);
  });

  it('rejects a response that is not the pull request', async () => {
    const cases: { name: string; body: unknown }[] = [
      { name: 'HTML with status 200', body: '<html><body>Sign in</body></html>' },
      { name: 'an empty object', body: {} },
      { name: 'an unknown state', body: { number: prNumber, state: 'draft' } },
    ];
    await reopenThenClose();
    setGitHubPullRequest({ updatedAt: tie });
    const jobId = await checks.queued();
    for (const { name, body } of cases) {
      setup.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body });

      const failed = await checks.run(jobId).catch((error: unknown) => error);

      expect(failed, name).toBeInstanceOf(Error);
      expect((failed as Error).message, name).toMatch(
        new RegExp(
          `^GitHub returned an invalid pull request for GET /repos/${repository}/pulls/${prNumber}: `,
        ),
      );
      expect((await currentRun()).prClosedAt, name).not.toBeNull();
      expect((await checks.jobs()).map((job) => job.state), name).toEqual(['retry']);
    }
    expect(logsOf(setup.context, 'job.confirm_pull_request.failed')).toHaveLength(cases.length);
  });

  it('ends on another pull request', async () => {
    await reopenThenClose();
    const jobId = await checks.queued();
    setup.fake.addPullRequest({
      owner,
      repo,
      number: prNumber + 1,
      baseSha: setup.git.baseSha,
      headSha: setup.git.headSha,
      headRef: headBranch,
      title: 'Another',
    });
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const other = await octokit.rest.pulls.get({
      owner,
      repo,
      pull_number: prNumber + 1,
    });
    setup.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body: other.data });

    await checks.run(jobId);

    expect(logsOf(setup.context, 'job.confirm_pull_request.other_pull_request')).toMatchObject([
      {
        level: 40,
        reason:
          `GitHub returned another pull request for GET /repos/${repository}/pulls/${prNumber}: ` +
          'it is #13 of repository 8080, not #12 of repository 8080.',
      },
    ]);
    expect((await currentRun()).prClosedAt).not.toBeNull();
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed']);
  });

  it('keeps the state on 404', async () => {
    const closed = await reopenThenClose();
    const jobId = await checks.queued();
    setup.fake.queueResponse({ method: 'GET', path: pullPath, status: 404 });

    await checks.run(jobId);

    const run = await currentRun();
    expect(run.prClosedAt).toEqual(closed.prClosedAt);
    expect(run.status).toBe('cancelled');
    expect(logsOf(setup.context, 'job.confirm_pull_request.not_found')).toMatchObject([{ level: 40 }]);
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed']);
  });

  it('keeps arrival order without credentials', async () => {
    setup.context.github = null;

    await reopenThenClose();

    expect(await checks.jobs()).toEqual([]);
    expect(logsOf(setup.context, 'pull_request.unconfirmed')).toMatchObject([
      { level: 40, repository, prNumber, action: 'closed' },
    ]);
    expect(String(logsOf(setup.context, 'pull_request.unconfirmed')[0]!.msg)).toContain('Set APP_ID');
  });

  it('ends a check on a worker without credentials', async () => {
    await reopenThenClose();
    const jobId = await checks.queued();
    setup.context.github = null;

    await checks.run(jobId);

    expect((await currentRun()).prClosedAt).not.toBeNull();
    expect(pullRequestReads()).toHaveLength(0);
    expect(logsOf(setup.context, 'job.confirm_pull_request.not_configured')).toMatchObject([{ level: 40 }]);
  });

  it('reads again after a close during the read', async () => {
    await reopenThenClose();
    const first = await checks.queued();
    // A comment at 09:06:00 is GitHub's last update when the check reads the pull request.
    const commentAt = '2024-06-01T09:06:00Z';
    setGitHubPullRequest({ updatedAt: commentAt });
    // A close in that second is delivered after GitHub's response and before the check takes its lock.
    const github = setup.context.github!;
    const installationOctokit = github.installationOctokit.bind(github);
    let closeOutcome: string | undefined;
    github.installationOctokit = async (id: number) => {
      const octokit = await installationOctokit(id);
      octokit.hook.after('request', async (_response, options) => {
        if (closeOutcome !== undefined || !String(options.url).includes('/pulls/')) return;
        setGitHubPullRequest({ closedAt: commentAt, updatedAt: commentAt });
        closeOutcome = await deliver(pullRequestEvent('closed', commentAt));
      });
      return octokit;
    };

    await checks.run(first);

    expect(closeOutcome).toMatch(/^pull request closed: marked 1 run/);
    expect((await currentRun()).prClosedAt?.toISOString()).toBe('2024-06-01T09:06:00.000Z');
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { status: 'skipped', reason: expect.stringMatching(/after GitHub was read, so check .* reads it again$/) },
    ]);
    const jobs = await checks.jobs();
    expect(jobs.map((job) => job.state)).toEqual(['completed', 'created']);

    await checks.run(jobs[1]!.id);

    expect((await currentRun()).prClosedAt?.toISOString()).toBe('2024-06-01T09:06:00.000Z');
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')[1]).toMatchObject({
      github: 'closed',
      status: 'unchanged',
    });
  });

  it('leaves the state to a later check', async () => {
    await reopenThenClose();
    const first = await checks.queued();
    setGitHubPullRequest({ updatedAt: tie });

    // A reopen of the same second arrives while the first check runs, so it queues a second.
    await checks.run(first, async () => {
      await deliver(pullRequestEvent('reopened', tie));
    });

    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { status: 'skipped', reason: expect.stringMatching(/is queued and reads GitHub later$/) },
    ]);
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed', 'created']);
  });
});

describe('head commit without a run', () => {
  const pushedAt = '2024-06-01T09:10:00Z';

  /** Pushes a commit to the head branch on the fake GitHub, without a webhook, and returns it. */
  async function push(): Promise<string> {
    const sha = await commitOnBranch(setup.git.dir, headBranch, { 'src/b.ts': 'export const b = 2;\n' });
    setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { headSha: sha, updatedAt: pushedAt });
    return sha;
  }

  function queueCheck() {
    return setup.context.db.transaction((tx) =>
      queuePullRequestConfirmation(tx, setup.context.boss, {
        installationId: setup.installationId,
        repositoryId,
        repository,
        prNumber,
      }),
    );
  }

  async function runOf(headSha: string) {
    const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.headSha, headSha));
    return run;
  }

  it('analyzes a push whose event was lost', async () => {
    expect(await deliver(pullRequestEvent('opened', '2024-06-01T09:00:00Z'))).toMatch(/queued$/);
    const older = await currentRun();
    const pushed = await push();

    await checks.run((await queueCheck())!);

    const newer = (await runOf(pushed))!;
    expect(newer.status).toBe('queued');
    expect(newer.baseRef).toBe('main');
    expect(newer.prUpdatedAt?.toISOString()).toBe('2024-06-01T09:10:00.000Z');
    const superseded = (await runOf(older.headSha))!;
    expect(superseded.status).toBe('superseded');
    expect((await setup.context.boss.getJobById(analyzeQueue, older.analyzeJobId!))?.state).toBe(
      'cancelled',
    );
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      {
        github: 'open',
        status: 'corrected',
        outcomes: [`synchronize: run ${newer.id} queued; superseded 1 older run(s)`],
      },
    ]);
  });

  it('reads again after a skipped push during the read', async () => {
    await deliver(pullRequestEvent('opened', '2024-06-01T09:00:00Z'));
    const older = await currentRun();
    const first = (await queueCheck())!;
    // GitHub still returns the opened head when a push lands, while the installation is
    // suspended, and its `synchronize` event is delivered before the check takes its lock.
    const github = setup.context.github!;
    const installationOctokit = github.installationOctokit.bind(github);
    let skipped: string | undefined;
    let pushed = '';
    github.installationOctokit = async (id: number) => {
      const octokit = await installationOctokit(id);
      octokit.hook.after('request', async (_response, options) => {
        if (skipped !== undefined || !String(options.url).includes('/pulls/')) return;
        await setup.context.database.sql`
          UPDATE installations SET suspended_at = now() WHERE id = ${setup.installationId}`;
        pushed = await push();
        const event = pullRequestEvent('synchronize', pushedAt);
        event.pull_request.head.sha = pushed;
        skipped = await deliver(event);
      });
      return octokit;
    };

    await checks.run(first);

    expect(skipped).toMatch(/^skipped: .* is suspended\. .* Superseded 1 run\(s\) of older commits\.$/);
    // Applying GitHub's older response would analyze the opened head again.
    expect((await runOf(older.headSha))!.status).toBe('superseded');
    expect(await runOf(pushed)).toBeUndefined();
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { status: 'skipped', reason: expect.stringMatching(/after GitHub was read, so check .* reads it again$/) },
    ]);
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed', 'created']);
  });
});
