import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installations, prRuns } from '../../src/db/schema/index.ts';
import { primaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import {
  confirmDelaySeconds,
  confirmInstallationQueue,
  handleConfirmInstallationJob,
  type ConfirmInstallationJobData,
} from '../../src/jobs/confirm-installation.ts';
import { handleResumeInstallationJob } from '../../src/jobs/resume-installation.ts';
import {
  resumeInstallationQueue,
  type ResumeInstallationJobData,
} from '../../src/jobs/resume-installation-queue.ts';
import {
  describeInstallationCancel,
  type InstallationCancelCause,
} from '../../src/runs/cancel-installation-work.ts';
import { createApp } from '../../src/web/app.tsx';
import { logsOf } from '../helpers/context.ts';
import { createGitHubTestContext, insertUser, type GitHubTestContext } from '../helpers/github-context.ts';
import { keyedQueue } from '../helpers/jobs.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'installation-order-secret';
const installationPath = '/app/installations/:installation_id';
/** Account of GitHub's example installation payloads. */
const account = { login: 'Codertocat', id: 21031067 };

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    env: { WEBHOOK_SECRET: secret },
  });
  app = createApp(setup.context);
  // The sender of the example `created` payloads installed the app, so later ones record it.
  const owner = await insertUser(setup.context, account.login);
  await setup.context.db.insert(installations).values({
    id: setup.installationId,
    accountLogin: account.login,
    accountId: account.id,
    accountType: 'User',
    userId: owner.id,
  });
  setGitHubInstallation({ suspended: false });
});

afterEach(async () => {
  await setup?.close();
});

/** Sets the installation's state on the fake GitHub, with the example payloads' account. */
function setGitHubInstallation(state: { suspended: boolean; suspendedBy?: string }) {
  setup.fake.setInstallation({
    id: setup.installationId,
    account: { login: account.login, id: account.id, type: 'User' },
    ...state,
  });
}

/** Delivers GitHub's example payload of the event and action, signed, and returns its outcome. */
async function deliver(event: string, action: string): Promise<string> {
  const payload = examplePayload(event, action, setup.installationId);
  const deliveryId = `installation-order-${delivery++}`;
  const response = await postSignedWebhook(app, { secret, event, deliveryId, payload });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

async function installationRow() {
  const [row] = await setup.context.db
    .select()
    .from(installations)
    .where(eq(installations.id, setup.installationId));
  return row!;
}

/** Creates a queued run and its analyze job through a `pull_request.opened` delivery. */
async function queuedRun() {
  const outcome = await deliver('pull_request', 'opened');
  expect(outcome).toMatch(/queued/);
  const [run] = await setup.context.db
    .select()
    .from(prRuns)
    .where(eq(prRuns.installationId, setup.installationId));
  return run!;
}

async function runById(id: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, id));
  return run!;
}

/** Asserts that the run was cancelled with the reason of `cause` by `actorLogin`. */
async function expectCancelled(
  runId: string,
  actorLogin: string | null,
  cause: InstallationCancelCause,
) {
  const run = await runById(runId);
  expect(run.status).toBe('cancelled');
  const reason = describeInstallationCancel({
    id: setup.installationId,
    accountLogin: account.login,
    actorLogin,
    cause,
  });
  expect(run.error).toBe(reason);
  return run;
}

/** The installation's resume jobs, which check its open pull requests. */
const resumes = keyedQueue<ResumeInstallationJobData>({
  context: () => setup.context,
  queue: resumeInstallationQueue,
  key: () => String(setup.installationId),
  handle: handleResumeInstallationJob,
});

/** The installation's check jobs. */
const checks = keyedQueue<ConfirmInstallationJobData>({
  context: () => setup.context,
  queue: confirmInstallationQueue,
  key: () => String(setup.installationId),
  handle: handleConfirmInstallationJob,
});

function installationRequests() {
  return setup.fake.requests.filter(
    (request) =>
      request.method === 'GET' && request.path === `/app/installations/${setup.installationId}`,
  );
}

describe('installation events out of order', () => {
  it('unsuspend then suspend ends active', async () => {
    const run = await queuedRun();

    // GitHub blocks webhook events while an installation is suspended, so the unsuspend has
    // the open pull requests checked with GitHub.
    expect(await deliver('installation', 'unsuspend')).toBe(
      `installation ${setup.installationId} resumed; queued a check of its open pull requests ` +
        'with GitHub',
    );
    const [resume] = await resumes.jobs();
    const [queued] = await checks.jobs();
    expect(queued!.delayMs).toBeGreaterThanOrEqual(confirmDelaySeconds * 1000 - 1000);
    expect(queued!.delayMs).toBeLessThanOrEqual(confirmDelaySeconds * 1000 + 1000);

    const suspended = await deliver('installation', 'suspend');
    expect(suspended).toMatch(/marked suspended; cancelled 1 run\(s\).* and 1 resume job\(s\)$/);
    expect((await resumes.jobs()).map((job) => job.state)).toEqual(['cancelled']);
    expect((await installationRow()).suspendedAt).not.toBeNull();
    expect((await runById(run.id)).status).toBe('cancelled');
    const jobId = await checks.queued();
    expect(jobId).toBe(queued!.id);

    await checks.run(jobId);

    const row = await installationRow();
    expect(row.suspendedAt).toBeNull();
    expect(row.deletedAt).toBeNull();
    expect((await runById(run.id)).status).toBe('cancelled');
    expect(installationRequests()).toHaveLength(1);
    expect(installationRequests()[0]!.headers.authorization).toMatch(/^bearer eyJ/i);
    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      {
        github: 'active',
        status: 'corrected',
        suspended: false,
        deleted: false,
        resumeJobId: expect.any(String),
      },
    ]);
    // The suspend cancelled the unsuspend's resume, so the check queues a new one.
    const [completed] = logsOf(setup.context, 'job.confirm_installation.completed');
    expect(completed!.resumeJobId).not.toBe(resume!.id);
    expect((await resumes.jobs()).map((job) => job.state)).toEqual(['cancelled', 'created']);
  });

  it('suspend then unsuspend ends suspended', async () => {
    setGitHubInstallation({ suspended: true, suspendedBy: 'monalisa' });
    await deliver('installation', 'suspend');
    await deliver('installation', 'unsuspend');
    expect((await installationRow()).suspendedAt).toBeNull();
    // The unsuspend lets new work start until the check.
    const run = await queuedRun();
    expect(run.status).toBe('queued');

    await checks.run(await checks.queued());

    const row = await installationRow();
    expect(row.suspendedAt).not.toBeNull();
    // GitHub's suspended_at has whole seconds, the time of the event's own mark does not.
    expect(row.suspendedAt!.getMilliseconds()).toBe(0);
    expect(row.deletedAt).toBeNull();
    await expectCancelled(run.id, 'monalisa', 'suspended');
    expect((await setup.context.boss.getJobById(analyzeQueue, run.analyzeJobId!))?.state).toBe(
      'cancelled',
    );
    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      {
        github: 'suspended',
        status: 'corrected',
        suspended: true,
        // The unsuspend's resume waits, and the check cancels it with the run.
        cancelled: 'cancelled 1 run(s), 0 report(s), 0 patch request(s) and 1 resume job(s)',
      },
    ]);
  });

  it('deleted then created ends active', async () => {
    expect(await deliver('installation', 'deleted')).toMatch(/marked deleted/);
    expect((await installationRow()).deletedAt).not.toBeNull();
    expect(await deliver('installation', 'created')).toBe(
      `installation ${setup.installationId} recorded for Codertocat`,
    );

    await checks.run(await checks.queued());

    const row = await installationRow();
    expect(row.deletedAt).toBeNull();
    expect(row.suspendedAt).toBeNull();
    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      { github: 'active', status: 'unchanged' },
    ]);
  });

  it('created after deleted ends deleted', async () => {
    setup.fake.removeInstallation(setup.installationId);
    await deliver('installation', 'deleted');
    await deliver('installation', 'created');
    expect((await installationRow()).deletedAt).toBeNull();
    const run = await queuedRun();

    await checks.run(await checks.queued());

    expect((await installationRow()).deletedAt).not.toBeNull();
    const cancelled = await expectCancelled(run.id, null, 'uninstalled');
    expect(cancelled.error).toContain('because the GitHub App was uninstalled from Codertocat');
    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      { github: 'deleted', status: 'corrected', deleted: true },
    ]);
  });

  it('leaves the marks to a later check', async () => {
    await deliver('installation', 'suspend');
    const first = await checks.queued();

    // The unsuspend arrives while the first check runs, so it queues a second check.
    await checks.run(first, async () => {
      await deliver('installation', 'unsuspend');
    });

    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      { status: 'skipped', reason: expect.stringMatching(/is queued and reads GitHub later$/) },
    ]);
    expect((await installationRow()).suspendedAt).toBeNull();
    const jobs = await checks.jobs();
    expect(jobs.map((job) => job.state)).toEqual(['completed', 'created']);

    setGitHubInstallation({ suspended: true });
    await checks.run(jobs[1]!.id);
    expect((await installationRow()).suspendedAt).not.toBeNull();
  });
});

describe('installation events for unrecorded installations', () => {
  it('queues no check', async () => {
    const burst = [1, 2, 3].map((offset) => Number.MAX_SAFE_INTEGER - offset);
    const outcomes: string[] = [];
    for (const id of [...burst, Number.MAX_SAFE_INTEGER]) {
      for (const action of ['suspend', 'unsuspend', 'deleted']) {
        const payload = examplePayload('installation', action, id);
        const deliveryId = `installation-order-${delivery++}`;
        const response = await postSignedWebhook(app, { secret, event: 'installation', deliveryId, payload });
        expect(response.status).toBe(202);
        outcomes.push(((await response.json()) as { outcome: string }).outcome);
      }
    }

    expect(outcomes).toHaveLength(12);
    for (const [index, outcome] of outcomes.entries()) {
      const id = index < 9 ? burst[Math.floor(index / 3)] : Number.MAX_SAFE_INTEGER;
      expect(outcome).toBe(`ignored: installation ${id} is not recorded, so it has no mark or work to change`);
    }
    const [jobs] = await setup.context.database.sql<{ count: number }[]>`
      SELECT count(*)::int AS count FROM pgboss.job WHERE name = ${confirmInstallationQueue}`;
    expect(jobs!.count).toBe(0);
  });

  it('checks without asking GitHub', async () => {
    await deliver('installation', 'suspend');
    const jobId = await checks.queued();
    await setup.context.db.delete(installations).where(eq(installations.id, setup.installationId));

    await checks.run(jobId);

    expect(installationRequests()).toHaveLength(0);
    expect(logsOf(setup.context, 'job.confirm_installation.completed')).toMatchObject([
      { status: 'skipped', reason: 'installation not recorded' },
    ]);
  });
});

describe('installation check failures', () => {
  it('retries a GitHub server error', async () => {
    await deliver('installation', 'suspend');
    const jobId = await checks.queued();
    setup.fake.queueResponse({ method: 'GET', path: installationPath, status: 502 });

    const failed = await checks.run(jobId).catch((error: unknown) => error);

    expect((failed as { status?: number }).status).toBe(502);
    // One request: the job's retries replace Octokit's.
    expect(installationRequests()).toHaveLength(1);
    expect((await installationRow()).suspendedAt).not.toBeNull();
    const [retry] = await checks.jobs();
    expect(retry!.state).toBe('retry');
    // The first retry waits 15 to 30 s.
    expect(retry!.waitMs).toBeGreaterThan(10_000);
    expect(logsOf(setup.context, 'job.confirm_installation.failed')).toMatchObject([
      { level: 50, attempt: 0, finalAttempt: false, err: { status: 502 } },
    ]);

    await checks.run(jobId);

    expect((await installationRow()).suspendedAt).toBeNull();
    expect(installationRequests()).toHaveLength(2);
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed']);
  });

  it('retries a GitHub rate limit', async () => {
    await deliver('installation', 'suspend');
    const jobId = await checks.queued();
    const reset = Math.floor(Date.now() / 1000) + 1800;
    setup.fake.queueResponse(primaryRateLimitError('GET', installationPath, reset));

    const failed = await checks.run(jobId).catch((error: unknown) => error);

    expect((failed as { status?: number }).status).toBe(403);
    expect((await installationRow()).suspendedAt).not.toBeNull();
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['retry']);
    expect(logsOf(setup.context, 'job.confirm_installation.failed')).toMatchObject([
      { rateLimit: 'primary', liftsAt: new Date((reset + 1) * 1000).toISOString() },
    ]);
  });

  it('rejects a response that is not an installation', async () => {
    const cases: { name: string; status?: number; body: unknown }[] = [
      { name: 'HTML with status 200', body: '<html><body>Sign in</body></html>' },
      { name: 'an empty object', body: {} },
      { name: 'null', body: 'null' },
      { name: 'a numeric suspended_at', body: { id: setup.installationId, suspended_at: 12345 } },
      { name: 'another installation', body: { id: setup.installationId + 1, suspended_at: null } },
      {
        name: 'another suspended installation',
        body: { id: setup.installationId + 1, suspended_at: '2024-06-01T09:00:00Z' },
      },
    ];
    const run = await queuedRun();
    for (const { name, body } of cases) {
      await deliver('installation', 'unsuspend');
      const jobId = await checks.queued();
      setup.fake.queueResponse({ method: 'GET', path: installationPath, status: 200, body });

      const failed = await checks.run(jobId).catch((error: unknown) => error);

      expect(failed, name).toBeInstanceOf(Error);
      expect((failed as Error).message, name).toMatch(
        /^GitHub returned an invalid installation for GET \/app\/installations\/\d+: /,
      );
      const row = await installationRow();
      expect(row.suspendedAt, name).toBeNull();
      expect(row.deletedAt, name).toBeNull();
      expect((await runById(run.id)).status, name).toBe('queued');
      expect((await checks.jobs()).map((job) => job.state), name).toEqual(['retry']);
      await setup.context.database.sql`
        DELETE FROM pgboss.job WHERE name = ${confirmInstallationQueue}`;
    }
    expect(logsOf(setup.context, 'job.confirm_installation.failed')).toHaveLength(cases.length);
  });

  it('reads a suspended installation with a bad time', async () => {
    setup.fake.addRoute({
      method: 'GET',
      pattern: installationPath,
      auth: 'app',
      handle: async () => ({
        status: 200,
        body: { id: setup.installationId, suspended_at: '2024-13-45T99:00:00Z', suspended_by: null },
      }),
    });
    await deliver('installation', 'suspend');
    const row = await installationRow();

    await checks.run(await checks.queued());

    expect(logsOf(setup.context, 'job.confirm_installation.failed')).toEqual([]);
    expect((await installationRow()).suspendedAt).toEqual(row.suspendedAt);
  });

  it('keeps the marks without credentials', async () => {
    setup.context.github = null;
    const run = await queuedRun();

    expect(await deliver('installation', 'suspend')).toMatch(/marked suspended; cancelled 1 run/);

    expect((await installationRow()).suspendedAt).not.toBeNull();
    expect((await runById(run.id)).status).toBe('cancelled');
    expect(await checks.jobs()).toEqual([]);
    expect(logsOf(setup.context, 'installation.unconfirmed')).toMatchObject([
      { level: 40, installationId: setup.installationId, action: 'suspend' },
    ]);
    expect(String(logsOf(setup.context, 'installation.unconfirmed')[0]!.msg)).toContain('Set APP_ID');
  });

  it('ends a check on a worker without credentials', async () => {
    await deliver('installation', 'suspend');
    const jobId = await checks.queued();
    setup.context.github = null;

    await checks.run(jobId);

    expect((await installationRow()).suspendedAt).not.toBeNull();
    expect(installationRequests()).toHaveLength(0);
    expect((await checks.jobs()).map((job) => job.state)).toEqual(['completed']);
    expect(logsOf(setup.context, 'job.confirm_installation.not_configured')).toMatchObject([{ level: 40 }]);
  });
});
