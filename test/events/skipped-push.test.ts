// A push while the installation is suspended gets no analysis: GitHub blocks its webhook events,
// or Fixwright skips the `synchronize` event that arrives. The run of the older commit must then
// take no paid preview, and unsuspending the installation must get the new commit analyzed.
import { count, eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  patchRequests,
  prRuns,
  tokenEvents,
  tokenReservations,
} from '../../src/db/schema/index.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { handleConfirmPullRequestJob } from '../../src/jobs/confirm-pull-request.ts';
import {
  confirmPullRequestQueue,
  type ConfirmPullRequestJobData,
} from '../../src/jobs/confirm-pull-request-queue.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { handleResumeInstallationJob } from '../../src/jobs/resume-installation.ts';
import {
  resumeInstallationQueue,
  type ResumeInstallationJobData,
} from '../../src/jobs/resume-installation-queue.ts';
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
import { keyedQueue, runDueJob } from '../helpers/jobs.ts';
import { countJobs, examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'skipped-push-secret';
const openedAt = '2024-06-01T09:00:00Z';
const pushedAt = '2024-06-01T09:10:00Z';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let user: Awaited<ReturnType<typeof insertUser>>;
let delivery = 0;

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    env: { WEBHOOK_SECRET: secret },
  });
  app = createApp(setup.context);
  user = await insertUser(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId, userId: user.id });
});

afterEach(async () => {
  await setup?.close();
});

/** Delivers a signed webhook and returns its outcome. */
async function deliver(event: string, payload: Record<string, unknown>): Promise<string> {
  const response = await postSignedWebhook(app, {
    secret,
    event,
    deliveryId: `skipped-push-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

/** Returns GitHub's example `pull_request` payload of `action` for the fake's pull request at `headSha`. */
function pullRequestEvent(action: string, headSha: string, at: string): Record<string, any> {
  const payload = examplePayload('pull_request', action, setup.installationId);
  payload.number = prNumber;
  payload.repository.id = repositoryId;
  payload.repository.full_name = repository;
  payload.repository.owner.login = owner;
  payload.pull_request.number = prNumber;
  payload.pull_request.state = 'open';
  payload.pull_request.closed_at = null;
  payload.pull_request.updated_at = at;
  payload.pull_request.head.sha = headSha;
  payload.pull_request.head.ref = headBranch;
  payload.pull_request.head.repo.full_name = repository;
  payload.pull_request.base.ref = 'main';
  payload.pull_request.base.sha = setup.git.baseSha;
  return payload;
}

/** Delivers GitHub's example `installation` payload of `action`, and sets the fake to match. */
async function installationEvent(action: 'suspend' | 'unsuspend'): Promise<string> {
  setup.fake.setInstallation({
    id: setup.installationId,
    account: { login: owner, id: 1, type: 'Organization' },
    suspended: action === 'suspend',
  });
  return deliver('installation', examplePayload('installation', action, setup.installationId));
}

/** Pushes a commit to the head branch on the fake GitHub and returns its sha. */
async function push(): Promise<string> {
  const sha = await commitOnBranch(setup.git.dir, headBranch, { 'src/b.ts': 'export const b = 2;\n' });
  setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { headSha: sha, updatedAt: pushedAt });
  return sha;
}

const runAnalyzeJob = (jobId: string) =>
  runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
    handleAnalyzeJob(setup.context, job),
  );

const checks = keyedQueue<ConfirmPullRequestJobData>({
  context: () => setup.context,
  queue: confirmPullRequestQueue,
  key: () => `${repositoryId}#${prNumber}`,
  handle: handleConfirmPullRequestJob,
});

/** The installation's resume, which queues the checks of its open pull requests. */
const resumes = keyedQueue<ResumeInstallationJobData>({
  context: () => setup.context,
  queue: resumeInstallationQueue,
  key: () => String(setup.installationId),
  handle: handleResumeInstallationJob,
});

/** Ends the suspension and runs the resume that it queues. */
async function unsuspend(): Promise<string> {
  const outcome = await installationEvent('unsuspend');
  await resumes.run(await resumes.queued());
  return outcome;
}

async function runOf(headSha: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.headSha, headSha));
  return run;
}

/** Opens the pull request and analyzes its head commit, so that its run takes previews. */
async function completedRun() {
  expect(await deliver('pull_request', pullRequestEvent('opened', setup.git.headSha, openedAt))).toMatch(
    /^run .* queued$/,
  );
  const queued = (await runOf(setup.git.headSha))!;
  await runAnalyzeJob(queued.analyzeJobId!);
  const run = (await runOf(setup.git.headSha))!;
  expect(run.status).toBe('completed');
  return run;
}

/** Requests a preview of every finding of run `runId` through the API. */
async function requestPreview(runId: string) {
  const findingIds = (
    await setup.context.database.sql<{ id: string }[]>`SELECT id FROM findings WHERE run_id = ${runId}`
  ).map((row) => row.id);
  expect(findingIds.length).toBeGreaterThan(0);
  const response = await app.request(`/api/runs/${runId}/patch-requests`, {
    method: 'POST',
    headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ findingIds }),
  });
  return { status: response.status, body: (await response.json()) as { error: Record<string, unknown> } };
}

/** Asserts that no preview was queued and nothing was reserved or charged. */
async function expectNothingCharged() {
  const [requests] = await setup.context.db.select({ value: count() }).from(patchRequests);
  const [ledger] = await setup.context.db.select({ value: count() }).from(tokenEvents);
  const [reservations] = await setup.context.db.select({ value: count() }).from(tokenReservations);
  expect(requests!.value).toBe(0);
  expect(ledger!.value).toBe(0);
  expect(reservations!.value).toBe(0);
  expect(await countJobs(setup.context, previewQueue)).toBe(0);
}

function suspendedMessage(): string {
  return (
    `GitHub App installation ${setup.installationId} on ${owner} is suspended. An owner of ` +
    `${owner} must unsuspend it in the GitHub App settings on GitHub before Fixwright can ` +
    'work there again.'
  );
}

describe('push while suspended', () => {
  it('supersedes the run and analyzes the push after unsuspend', async () => {
    const older = await completedRun();
    expect(await installationEvent('suspend')).toMatch(/marked suspended/);
    const pushed = await push();

    const skipped = await deliver('pull_request', pullRequestEvent('synchronize', pushed, pushedAt));

    expect(skipped).toBe(`skipped: ${suspendedMessage()} Superseded 1 run(s) of older commits.`);
    const superseded = (await runOf(older.headSha))!;
    expect(superseded.status).toBe('superseded');
    expect(superseded.error).toBe(
      `Superseded: the pull request has the newer commit ${pushed}, which was not analyzed ` +
        `because ${suspendedMessage()} Fixwright analyzes that commit once the installation is ` +
        'unsuspended.',
    );
    expect(await runOf(pushed)).toBeUndefined();
    expect(await countJobs(setup.context, analyzeQueue)).toBe(1);

    const resumed = await unsuspend();
    expect(resumed).toBe(
      `installation ${setup.installationId} resumed; queued a check of its open pull requests ` +
        'with GitHub',
    );

    // The newer commit has no run until the check has read GitHub.
    const beforeCheck = await requestPreview(older.id);
    expect(beforeCheck.status).toBe(409);
    expect(beforeCheck.body.error.message).toBe(
      `Run ${older.id} is superseded by a newer commit that has no run yet; the run's \`error\` ` +
        `in GET /api/runs/${older.id} says why. Request fixes on the run of that commit once ` +
        'GET /api/runs lists it.',
    );
    expect(beforeCheck.body.error.newestRunId).toBeNull();
    await expectNothingCharged();

    await checks.run(await checks.queued());

    const newer = (await runOf(pushed))!;
    expect(newer.status).toBe('queued');
    expect(newer.prUpdatedAt?.toISOString()).toBe('2024-06-01T09:10:00.000Z');
    expect((await setup.context.boss.getJobById(analyzeQueue, newer.analyzeJobId!))?.state).toBe(
      'created',
    );
    expect((await runOf(older.headSha))!.status).toBe('superseded');
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { github: 'open', status: 'corrected', outcomes: [`synchronize: run ${newer.id} queued`] },
    ]);

    const whileAnalyzing = await requestPreview(older.id);
    expect(whileAnalyzing.status).toBe(409);
    expect(whileAnalyzing.body.error.message).toBe(
      `Run ${older.id} is superseded by a newer commit, whose run ${newer.id} is being ` +
        `analyzed; request fixes on run ${newer.id} once it has completed.`,
    );
    expect(whileAnalyzing.body.error.newestRunId).toBe(newer.id);

    await runAnalyzeJob(newer.analyzeJobId!);
    expect((await runOf(pushed))!.status).toBe('completed');
    const afterAnalysis = await requestPreview(older.id);
    expect(afterAnalysis.status).toBe(409);
    expect(afterAnalysis.body.error.message).toBe(
      `Run ${older.id} is superseded by a newer commit; request fixes on the newest run, ${newer.id}.`,
    );
    await expectNothingCharged();
  });

  it('finds a push without an event after unsuspend', async () => {
    const older = await completedRun();
    await installationEvent('suspend');
    // GitHub sends no webhook events to a suspended installation.
    const pushed = await push();

    await unsuspend();
    expect((await runOf(older.headSha))!.status).toBe('completed');
    await checks.run(await checks.queued());

    const newer = (await runOf(pushed))!;
    expect(newer.status).toBe('queued');
    const superseded = (await runOf(older.headSha))!;
    expect(superseded.status).toBe('superseded');
    expect(superseded.error).toBe(`Superseded by run ${newer.id} for the newer commit ${pushed}.`);
  });

  it('leaves a later run to its own event', async () => {
    const older = await completedRun();
    await installationEvent('suspend');
    const pushed = await push();
    // GitHub's response lags behind an event that Fixwright already applied.
    setup.fake.updatePullRequest(
      { owner, repo, number: prNumber },
      { headSha: pushed, updatedAt: '2024-06-01T08:59:00Z' },
    );

    await unsuspend();
    await checks.run(await checks.queued());

    expect(await runOf(pushed)).toBeUndefined();
    expect((await runOf(older.headSha))!.status).toBe('completed');
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { github: 'open', status: 'unchanged' },
    ]);
  });

  it('records nothing for a closed pull request', async () => {
    const older = await completedRun();
    const closedAt = '2024-06-01T09:20:00Z';
    setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { state: 'closed', closedAt });
    expect(await deliver('pull_request', {
      ...pullRequestEvent('closed', older.headSha, closedAt),
      action: 'closed',
    })).toMatch(/^pull request closed/);
    await installationEvent('suspend');
    const pushed = await push();

    const skipped = await deliver('pull_request', pullRequestEvent('synchronize', pushed, pushedAt));

    expect(skipped).toBe(`skipped: ${suspendedMessage()}`);
    expect((await runOf(older.headSha))!.status).toBe('completed');
    await unsuspend();
    // GitHub lists the pull request as closed, and its runs are marked closed, so it gets no check.
    expect(await countJobs(setup.context, confirmPullRequestQueue)).toBe(0);
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { knownPullRequests: 0, openPullRequests: 0, checksQueued: 0 },
    ]);
  });
});

describe('push to an archived repository', () => {
  const archivedOutcome =
    `skipped: repository ${repository} is archived, so GitHub would reject the check run and ` +
    'summary comment of a run. Unarchive it and push a commit to analyze the pull request.';

  it('gets no run from its event', async () => {
    const older = await completedRun();
    const pushed = await push();
    const event = pullRequestEvent('synchronize', pushed, pushedAt);
    event.repository.archived = true;

    const skipped = await deliver('pull_request', event);

    expect(skipped).toBe(archivedOutcome);
    expect(await runOf(pushed)).toBeUndefined();
    expect((await runOf(older.headSha))!.status).toBe('completed');
    expect(await countJobs(setup.context, analyzeQueue)).toBe(1);
  });

  it('gets no run from the check after unsuspend', async () => {
    const older = await completedRun();
    await installationEvent('suspend');
    const pushed = await push();
    setup.fake.setRepositoryArchived({ owner, repo }, true);

    await unsuspend();
    // The known pull request is checked, and the archived repository is not listed.
    expect(logsOf(setup.context, 'job.resume_installation.completed')).toMatchObject([
      { knownPullRequests: 1, repositories: 0, archivedRepositories: 1, checksQueued: 1 },
    ]);
    await checks.run(await checks.queued());

    expect(await runOf(pushed)).toBeUndefined();
    expect((await runOf(older.headSha))!.status).toBe('completed');
    expect(await countJobs(setup.context, analyzeQueue)).toBe(1);
    expect(logsOf(setup.context, 'job.confirm_pull_request.completed')).toMatchObject([
      { github: 'open', status: 'differs', outcomes: [`synchronize: ${archivedOutcome}`] },
    ]);
    await expectNothingCharged();
  });
});
