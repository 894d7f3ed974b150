// A run that is analyzed again (a force push back to its commit) queues a new report job. The
// report job of the earlier analysis is cancelled and does not mark the run reported, and a
// suspend must cancel the new one whether or not the earlier findings were posted.
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { findings, patchRequestFindings, prRuns } from '../../src/db/schema/index.ts';
import { secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import type { Route } from '../../src/demo/fakes/github/router.ts';
import type { FakeState } from '../../src/demo/fakes/github/state.ts';
import { handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { handleReportJob, reportQueue, type ReportJobData } from '../../src/jobs/report.ts';
import { describeInstallationCancel } from '../../src/runs/cancel-installation-work.ts';
import { createApp } from '../../src/web/app.tsx';
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
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'analyze-again-secret';
const checkRunsPath = '/repos/:owner/:repo/check-runs';
/** A commit that the fake GitHub does not serve, so its run is only queued, then superseded. */
const otherSha = 'f'.repeat(40);

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;

/** Posts a signed webhook and returns its recorded outcome. */
async function deliver(event: string, payload: Record<string, unknown>): Promise<string> {
  const response = await postSignedWebhook(app, {
    secret,
    event,
    deliveryId: `analyze-again-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

/** Delivers a `synchronize` event of the fake pull request at `headSha`, `minute` minutes past 09:00. */
async function pushed(headSha: string, minute: number): Promise<string> {
  const payload = examplePayload('pull_request', 'synchronize', setup.installationId);
  payload.number = prNumber;
  payload.repository.id = repositoryId;
  payload.repository.full_name = repository;
  payload.pull_request.number = prNumber;
  payload.pull_request.head.sha = headSha;
  payload.pull_request.head.ref = headBranch;
  payload.pull_request.head.repo.full_name = repository;
  payload.pull_request.base.sha = setup.git.baseSha;
  payload.pull_request.updated_at = `2024-06-01T09:${String(minute).padStart(2, '0')}:00Z`;
  return deliver('pull_request', payload);
}

function routeOf(routes: Route<FakeState>[], method: string, pattern: string): Route<FakeState> {
  const route = routes.find((candidate) => candidate.method === method && candidate.pattern === pattern);
  if (!route) throw new Error(`The fake has no route ${method} ${pattern}.`);
  return route;
}

async function runAt(headSha: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.headSha, headSha));
  return run!;
}

async function jobState(queue: string, id: string | null) {
  expect(id).not.toBeNull();
  return (await setup.context.boss.getJobById(queue, id!))?.state;
}

/** Runs the handler of the run's current analyze job on attempt `retryCount`, as a worker does. */
async function analyze(runId: string, retryCount = 0) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  const job = { id: run!.analyzeJobId ?? randomUUID(), data: { runId }, retryCount, retryLimit: 4 };
  await handleAnalyzeJob(setup.context, job as PgBoss.JobWithMetadata<AnalyzeJobData>);
}

/** Fetches the report job `jobId` as a worker does, runs the handler and completes the job. */
async function report(jobId: string) {
  const jobs = await setup.context.boss.fetch<ReportJobData>(reportQueue, { includeMetadata: true });
  expect(jobs.map((job) => job.id)).toEqual([jobId]);
  await handleReportJob(setup.context, jobs[0]!);
  await setup.context.boss.complete(reportQueue, jobId);
}

/**
 * Opens the pull request at the fake's head commit, analyzes the run and runs its report job.
 * Returns the run after the report.
 */
async function reportedRun() {
  await pushed(setup.git.headSha, 0);
  const run = await runAt(setup.git.headSha);
  await analyze(run.id);
  const analyzed = await runAt(setup.git.headSha);
  await report(analyzed.reportJobId!);
  return runAt(setup.git.headSha);
}

/**
 * Supersedes the run at the fake's head commit by a push of another commit, then pushes its
 * commit back, so the run is queued again, and analyzes it. Returns the run after the analysis.
 */
async function analyzedAgain() {
  await pushed(otherSha, 1);
  expect((await runAt(setup.git.headSha)).status).toBe('superseded');
  const outcome = await pushed(setup.git.headSha, 2);
  const run = await runAt(setup.git.headSha);
  expect(outcome).toBe(`run ${run.id} queued again; superseded 1 older run(s)`);
  await analyze(run.id);
  return runAt(setup.git.headSha);
}

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    env: { WEBHOOK_SECRET: secret },
  });
  app = createApp(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterEach(async () => {
  await setup?.close();
});

describe('run analyzed again', () => {
  it('clears the earlier report time', async () => {
    const reported = await reportedRun();
    expect(reported.reportedAt).not.toBeNull();
    expect(setup.fake.checkRuns).toHaveLength(1);

    const again = await analyzedAgain();

    expect(again.status).toBe('completed');
    expect(again.reportJobId).not.toBe(reported.reportJobId);
    expect(await jobState(reportQueue, again.reportJobId)).toBe('created');
    expect(again.reportedAt).toBeNull();
    expect(again.reportError).toBeNull();
  });

  it('cancels the report job waiting for a rate limit', async () => {
    await pushed(setup.git.headSha, 0);
    const run = await runAt(setup.git.headSha);
    await analyze(run.id);
    const firstJobId = (await runAt(setup.git.headSha)).reportJobId!;
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPath, 600));
    await report(firstJobId);
    const waiting = await runAt(setup.git.headSha);
    expect(waiting.reportJobId).not.toBe(firstJobId);
    expect(await jobState(reportQueue, waiting.reportJobId)).toBe('created');

    const again = await analyzedAgain();

    expect(again.reportJobId).not.toBe(waiting.reportJobId);
    expect(await jobState(reportQueue, waiting.reportJobId)).toBe('cancelled');
    expect(await jobState(reportQueue, again.reportJobId)).toBe('created');
    const pending = await setup.context.database.sql<{ id: string }[]>`
      SELECT id FROM pgboss.job
      WHERE name = ${reportQueue} AND data->>'runId' = ${run.id} AND state IN ('created', 'retry')`;
    expect(pending.map((job) => job.id)).toEqual([again.reportJobId]);
    expect(setup.fake.checkRuns).toHaveLength(0);
  });

  it('keeps a report pending after a cancelled job', async () => {
    await pushed(setup.git.headSha, 0);
    await analyze((await runAt(setup.git.headSha)).id);
    const firstJobId = (await runAt(setup.git.headSha)).reportJobId!;
    const [active] = await setup.context.boss.fetch<ReportJobData>(reportQueue, {
      includeMetadata: true,
    });
    expect(active!.id).toBe(firstJobId);

    // The run is analyzed again while a worker runs its first report job, which then finishes
    // without posting the findings it would have read before the new analysis.
    const again = await analyzedAgain();
    expect(await jobState(reportQueue, firstJobId)).toBe('cancelled');
    await handleReportJob(setup.context, active!);

    expect(setup.fake.checkRuns).toHaveLength(0);
    expect(setup.fake.issueComments).toHaveLength(0);
    const stored = await runAt(setup.git.headSha);
    expect(stored.reportJobId).toBe(again.reportJobId);
    expect(stored.reportedAt).toBeNull();
    const replaced = setup.context.logs.find(
      (line) => line.event === 'report.replaced' && line.jobId === firstJobId,
    );
    expect(replaced).toBeDefined();
    expect(await jobState(reportQueue, again.reportJobId)).toBe('created');
    const outcome = await deliver(
      'installation',
      examplePayload('installation', 'suspend', setup.installationId),
    );
    expect(outcome).toContain('cancelled 0 run(s), 1 report(s)');
    expect(await jobState(reportQueue, again.reportJobId)).toBe('cancelled');
  });

  it('ignores a cancelled job failing', async () => {
    await pushed(setup.git.headSha, 0);
    await analyze((await runAt(setup.git.headSha)).id);
    const firstJobId = (await runAt(setup.git.headSha)).reportJobId!;
    await setup.context.database.sql`UPDATE pgboss.job SET retry_limit = 0 WHERE id = ${firstJobId}`;
    const [active] = await setup.context.boss.fetch<ReportJobData>(reportQueue, {
      includeMetadata: true,
    });
    expect(active!.id).toBe(firstJobId);

    // The run is analyzed again while the first report job creates its check run on its last
    // attempt, and GitHub rejects that request.
    let again: Awaited<ReturnType<typeof analyzedAgain>> | undefined;
    const create = routeOf(checkRoutes, 'POST', checkRunsPath);
    setup.fake.addRoute({
      ...create,
      async handle() {
        again = await analyzedAgain();
        return { status: 422, body: { message: 'Validation Failed' } };
      },
    });
    const error = await handleReportJob(setup.context, active!).catch((caught: unknown) => caught);
    if (!again) throw new Error('The report job created no check run.');

    expect((error as { status?: number }).status).toBe(422);
    const stored = await runAt(setup.git.headSha);
    expect(stored.reportJobId).toBe(again.reportJobId);
    expect(stored.reportError).toBeNull();
    expect(await jobState(reportQueue, again.reportJobId)).toBe('created');
  });

  it('cancels a pending job despite stale columns', async () => {
    const reported = await reportedRun();
    const again = await analyzedAgain();
    // Columns written by an earlier analysis's report job, as rows from before reportedAt was
    // cleared on a new analysis have them.
    await setup.context.db
      .update(prRuns)
      .set({ reportedAt: reported.reportedAt, reportError: 'Posting the results to GitHub failed.' })
      .where(eq(prRuns.id, again.id));

    const outcome = await deliver(
      'installation',
      examplePayload('installation', 'suspend', setup.installationId),
    );

    expect(outcome).toContain('cancelled 0 run(s), 1 report(s)');
    expect(await jobState(reportQueue, again.reportJobId)).toBe('cancelled');
    const stored = await runAt(setup.git.headSha);
    expect(stored.reportedAt).toBeNull();
    expect(stored.reportError).toMatch(/^The check run and summary comment were not posted\. /);
  });

  it('lets a suspend cancel the new report job', async () => {
    await reportedRun();
    const again = await analyzedAgain();
    expect(await jobState(reportQueue, again.reportJobId)).toBe('created');

    const outcome = await deliver(
      'installation',
      examplePayload('installation', 'suspend', setup.installationId),
    );

    expect(outcome).toBe(
      `installation ${setup.installationId} marked suspended; ` +
        'cancelled 0 run(s), 1 report(s) and 0 patch request(s)',
    );
    expect(await jobState(reportQueue, again.reportJobId)).toBe('cancelled');
    const reason = describeInstallationCancel({
      id: setup.installationId,
      accountLogin: 'Codertocat',
      actorLogin: 'Codertocat',
      cause: 'suspended',
    });
    const stored = await runAt(setup.git.headSha);
    expect(stored.reportError).toBe(`The check run and summary comment were not posted. ${reason}`);
    expect(stored.reportedAt).toBeNull();
  });
  it('posts changed findings on a new check run', async () => {
    const reported = await reportedRun();
    expect(setup.fake.checkRuns).toHaveLength(1);
    const earlier = setup.fake.checkRuns[0]!;
    expect(earlier.annotations).toHaveLength(1);
    expect(earlier.conclusion).not.toBe('success');

    // The pull request's base now contains its head commit, so its diff and findings are empty.
    setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { baseSha: setup.git.headSha });
    const again = await analyzedAgain();
    await report(again.reportJobId!);

    // GitHub keeps every annotation a check run was sent, so the new findings need a new one.
    expect(setup.fake.checkRuns).toHaveLength(2);
    const latest = setup.fake.checkRuns[1]!;
    expect(latest.headSha).toBe(setup.git.headSha);
    expect(latest.annotations).toHaveLength(0);
    expect(latest.conclusion).toBe('success');
    const stored = await runAt(setup.git.headSha);
    expect(stored.checkRunId).toBe(latest.id);
    expect(stored.checkRunId).not.toBe(reported.checkRunId);
    expect(stored.checkRunAnnotations).toBe(0);
    expect(stored.reportedAt).not.toBeNull();
  });
});

// pg-boss retries an analyze job that ran past its time limit while its first handler still
// runs, so two attempts of the same job can analyze the run at once.
describe('overlapping analyze attempts', () => {
  it('leave the completed run to the first', async () => {
    await pushed(setup.git.headSha, 0);
    const queued = await runAt(setup.git.headSha);

    // Attempt 0 waits at its first git tree request, after its analysis and before it stores.
    let releaseLate!: () => void;
    const lateGate = new Promise<void>((resolve) => {
      releaseLate = resolve;
    });
    let gatedRequests = 0;
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    octokit.hook.before('request', async (options) => {
      if (String(options.url).includes('/git/trees/') && gatedRequests++ === 0) await lateGate;
    });
    const late = analyze(queued.id, 0);
    while (gatedRequests === 0) await new Promise((resolve) => setTimeout(resolve, 10));

    await analyze(queued.id, 1);
    const completed = await runAt(setup.git.headSha);
    expect(completed.status).toBe('completed');
    await report(completed.reportJobId!);
    const stored = await setup.context.db.select().from(findings).where(eq(findings.runId, queued.id));
    expect(stored).toHaveLength(1);
    const user = await insertUser(setup.context);
    const created = await createPatchRequest(setup.context.db, setup.context.boss, {
      runId: queued.id,
      userId: user.id,
      findingIds: stored.map((finding) => finding.id),
    });
    expect(created.ok).toBe(true);

    releaseLate();
    await late;

    // The findings the preview selected stay, and the run keeps its report.
    const after = await setup.context.db.select().from(findings).where(eq(findings.runId, queued.id));
    expect(after.map((finding) => finding.id)).toEqual(stored.map((finding) => finding.id));
    const selected = await setup.context.db
      .select()
      .from(patchRequestFindings)
      .where(eq(patchRequestFindings.patchRequestId, created.ok ? created.id : ''));
    expect(selected).toHaveLength(1);
    const run = await runAt(setup.git.headSha);
    expect(run.reportJobId).toBe(completed.reportJobId);
    expect(run.reportedAt).not.toBeNull();
    expect(run.checkRunId).toBe(setup.fake.checkRuns[0]!.id);
    expect(setup.fake.checkRuns).toHaveLength(1);
  });
});
