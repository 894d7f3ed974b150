// A preview whose file read GitHub rate-limits for longer than Octokit waits ends its attempt
// without failing files, and a new preview job continues it once the limit lifts.
import { eq } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import {
  installations,
  patchFiles,
  patchRequests,
  prRuns,
  tokenEvents,
  tokenReservations,
  users,
} from '../../src/db/schema/index.ts';
import { primaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import type { FakeResponse } from '../../src/demo/fakes/github/router.ts';
import { handlePreviewJob, previewQueue, type PreviewJobData } from '../../src/jobs/preview.ts';
import { cancelInstallationWork } from '../../src/runs/cancel-installation-work.ts';
import { cancelPatchRequestsOfRuns } from '../../src/runs/cancel-run-work.ts';
import { createApp } from '../../src/web/app.tsx';
import type { TestContext } from '../helpers/context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import {
  answerWithFixedFiles,
  consoleLogFiles,
  completedRunValues,
  consoleLogFixes,
  createPatchRequestForRun,
  createPreviewTestContext,
  insertConsoleLogFindings,
  installationId,
  pathInPrompt,
  repositoryId,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';
import { createSignedInUser, type SignedInUser } from '../helpers/web.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const contentsPath = '/repos/:owner/:repo/contents/*path';
const webhookSecret = 'preview-rate-limit-webhook-secret';

let setup: PreviewTestContext;
let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;
/**
 * Runs on each read of a file's contents with the file's path. A response that it returns is
 * sent in place of the file.
 */
let onContentsRead: ((path: string) => Promise<FakeResponse | null>) | null = null;

/** Returns a primary rate limit response that lifts `seconds` from now, and its lift time. */
function rateLimitFor(seconds: number): { response: FakeResponse; liftsAt: number } {
  const reset = Math.floor(Date.now() / 1000) + seconds;
  const { status, headers, body } = primaryRateLimitError('GET', contentsPath, reset);
  return { response: { status, headers, body }, liftsAt: (reset + 1) * 1000 };
}

async function waitUntil(condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the condition');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Makes the fake Groq send each file's fix `delayMs` after the request. */
function answerAfter(delayMs: number): void {
  setup.groq.setHandler((request) => ({
    text: consoleLogFixes[pathInPrompt(request.messages.at(-1)!.content)]!,
    delayMs,
  }));
}

function completions(): number {
  return setup.groq.requests.filter((request) => request.path.endsWith('/chat/completions')).length;
}

async function storedRequest(id: string) {
  const [row] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, id));
  return row!;
}

async function fileStatuses(id: string) {
  const rows = await context.db
    .select({ path: patchFiles.path, status: patchFiles.status, error: patchFiles.error })
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, id))
    .orderBy(patchFiles.path);
  return rows;
}

/** Returns the ledger rows of the request's model calls, by path. */
async function ledgerRows(id: string) {
  return context.db
    .select({ path: tokenEvents.path, key: tokenEvents.idempotencyKey })
    .from(tokenEvents)
    .where(eq(tokenEvents.patchRequestId, id))
    .orderBy(tokenEvents.path);
}

/** Returns the request's preview jobs, oldest first. */
async function previewJobs(id: string) {
  return context.database.sql<{ id: string; data: PreviewJobData; start_after: Date; state: string }[]>`
    SELECT id, data, start_after, state FROM pgboss.job
    WHERE name = ${previewQueue} AND data->>'patchRequestId' = ${id}
    ORDER BY created_on, id`;
}

const runPreviewJob = (jobId: string) =>
  runDueJob<PreviewJobData>(context, previewQueue, jobId, (job) => handlePreviewJob(context, job));

async function previewJson(id: string) {
  const response = await app.request(`/api/patch-requests/${id}`, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return (await response.json()) as { status: string; rateLimitWait: unknown; files: { path: string; status: string }[] };
}

async function runPageOf(runId: string): Promise<string> {
  const response = await app.request(`/runs/${runId}`, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return response.text();
}

/** Returns the item of preview `id` in the "Earlier previews" list of a run page. */
function listItemOf(html: string, id: string): string {
  const start = html.indexOf(`<li><a href="/patch-requests/${id}">`);
  expect(start, `no list item for preview ${id}`).toBeGreaterThanOrEqual(0);
  return html.slice(start, html.indexOf('</li>', start));
}

async function previewPage(id: string): Promise<string> {
  const response = await app.request(`/patch-requests/${id}`, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return response.text();
}

/**
 * Creates a preview of both files of run `runId` (default the context's run) and starts its job
 * while the read of src/b.ts is rate-limited for `seconds`, after src/a.ts's model call has
 * started. `since` is the job's first rate-limited time. Returns the request, the lift time and
 * the job's end.
 */
async function startPreviewWithLimitedSecondFile(seconds: number, options: { since?: number; runId?: string } = {}) {
  const { since, runId = setup.runId } = options;
  const id = await createPatchRequestForRun(context, runId, user.userId);
  const jobId = (await storedRequest(id)).previewJobId!;
  if (since !== undefined) {
    const data: PreviewJobData = { patchRequestId: id, rateLimitedSince: since };
    await context.database.sql`UPDATE pgboss.job SET data = ${JSON.stringify(data)}::jsonb WHERE id = ${jobId}`;
  }
  const limit = rateLimitFor(seconds);
  const callsBefore = completions();
  onContentsRead = async (path) => {
    if (path !== 'src/b.ts') return null;
    onContentsRead = null;
    await waitUntil(() => completions() > callsBefore);
    return limit.response;
  };
  return { id, jobId, liftsAt: limit.liftsAt, job: runPreviewJob(jobId) };
}

/**
 * Adds pull request `number` of octo/demo at the head commit to the fake GitHub, and a
 * completed run of it with a finding in each file, from an event at 09:00. Returns the run's id.
 * Each test that changes a pull request gets its own, so the other tests keep their run.
 */
async function runOfNewPullRequest(number: number): Promise<string> {
  setup.github.addPullRequest({
    owner: 'octo',
    repo: 'demo',
    number,
    baseSha: setup.repository.baseSha,
    headSha: setup.repository.headSha,
    headRef: `feature-${number}`,
    title: `Change demo ${number}`,
  });
  const [run] = await context.db
    .insert(prRuns)
    .values({
      ...completedRunValues(setup.repository, number, `feature-${number}`),
      baseRef: 'main',
      prUpdatedAt: new Date('2024-06-01T09:00:00Z'),
    })
    .returning({ id: prRuns.id });
  await insertConsoleLogFindings(context, run!.id, Object.keys(consoleLogFiles));
  return run!.id;
}

/**
 * Returns GitHub's example `pull_request` payload with `action` for pull request `number` of
 * octo/demo at `headSha` against main, sent at 09:10.
 */
function pullRequestEvent(action: string, number: number, headSha: string): Record<string, any> {
  const payload = examplePayload('pull_request', 'opened', installationId);
  payload.action = action;
  payload.number = number;
  payload.repository.id = repositoryId;
  payload.repository.full_name = 'octo/demo';
  payload.pull_request.number = number;
  payload.pull_request.head.sha = headSha;
  payload.pull_request.head.ref = `feature-${number}`;
  payload.pull_request.head.repo.full_name = 'octo/demo';
  payload.pull_request.base.ref = 'main';
  payload.pull_request.base.sha = setup.repository.baseSha;
  payload.pull_request.updated_at = '2024-06-01T09:10:00Z';
  return payload;
}

let delivery = 0;

/** Posts a signed `pull_request` webhook to the app and returns its outcome. */
async function deliver(payload: Record<string, unknown>): Promise<string> {
  const response = await postSignedWebhook(app, {
    secret: webhookSecret,
    event: 'pull_request',
    deliveryId: `preview-rate-limit-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

/** A user's charged and reserved tokens, and the number of reservations held. */
interface Allowance {
  tokensUsed: number;
  tokensReserved: number;
  reservations: number;
}

async function allowanceOf(userId: string): Promise<Allowance> {
  const [user] = await context.db
    .select({ tokensUsed: users.tokensUsed, tokensReserved: users.tokensReserved })
    .from(users)
    .where(eq(users.id, userId));
  const reservations = await context.db
    .select({ id: tokenReservations.id })
    .from(tokenReservations)
    .where(eq(tokenReservations.userId, userId));
  return { ...user!, reservations: reservations.length };
}

/** Runs the job of startPreviewWithLimitedSecondFile to its end. */
async function previewWithLimitedSecondFile(seconds: number, options: { since?: number; runId?: string } = {}) {
  const { job, ...started } = await startPreviewWithLimitedSecondFile(seconds, options);
  await job;
  return started;
}

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: consoleLogFiles,
    groqApiKey: 'gsk_platform_preview_rate_limit_test',
    env: {
      PREVIEW_FILE_CONCURRENCY: '2',
      GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: '3600',
      WEBHOOK_SECRET: webhookSecret,
    },
  });
  context = setup.context;
  user = await createSignedInUser(context.db, { login: 'preview-rate-limit', plan: 'pro', tokenLimit: 100_000 });
  await context.db.update(installations).set({ userId: user.userId }).where(eq(installations.id, installationId));
  await insertConsoleLogFindings(context, setup.runId, Object.keys(consoleLogFiles));
  app = createApp(context);
  const contents = defaultRoutes.find((route) => route.method === 'GET' && route.pattern === contentsPath)!;
  setup.github.addRoute({
    ...contents,
    async handle(routeContext) {
      const hook = onContentsRead;
      const replaced = hook ? await hook(routeContext.params.path!) : null;
      return replaced ?? contents.handle(routeContext);
    },
  });
});

beforeEach(() => {
  onContentsRead = null;
  answerWithFixedFiles(consoleLogFixes, setup.groq, setup.gemini);
});

afterAll(async () => {
  await setup?.close();
});

describe('preview job under a long rate limit', () => {
  let waitedId: string;

  it('continues in a new job when the limit lifts', async () => {
    const before = Date.now();
    const { id, jobId, liftsAt } = await previewWithLimitedSecondFile(120);
    waitedId = id;

    expect(await fileStatuses(id)).toEqual([
      { path: 'src/a.ts', status: 'ready', error: null },
      { path: 'src/b.ts', status: 'pending', error: null },
    ]);
    expect(completions()).toBe(1);
    expect((await ledgerRows(id)).map((row) => row.path)).toEqual(['src/a.ts']);

    const jobs = await previewJobs(id);
    expect(jobs.map((job) => job.state)).toEqual(['completed', 'created']);
    const next = jobs[1]!;
    expect(jobs[0]!.id).toBe(jobId);
    expect(new Date(next.start_after).getTime()).toBe(liftsAt);
    expect(next.data.firstAttempt).toBe(1);
    expect(next.data.rateLimitedSince).toBeGreaterThanOrEqual(before);
    const waiting = await storedRequest(id);
    expect(waiting.status).toBe('running');
    expect(waiting.error).toBeNull();
    expect(waiting.previewJobId).toBe(next.id);
    expect(waiting.previewRateLimitedUntil?.getTime()).toBe(liftsAt);

    const until = new Date(liftsAt).toISOString();
    const json = await previewJson(id);
    expect(json.status).toBe('running');
    expect(json.rateLimitWait).toEqual({ job: previewQueue, until, filesRunning: 0 });
    const page = await previewPage(id);
    expect(page).toContain('Previewing waits for a GitHub rate limit on this installation until');
    expect(page).toContain(`datetime="${until}"`);
    const logged = context.logs.find((line) => line.event === 'job.preview.rate_limited' && line.jobId === jobId);
    expect(logged?.nextJobId).toBe(next.id);
    const completed = context.logs.find((line) => line.event === 'job.preview.completed' && line.jobId === jobId);
    expect(completed?.status).toBe('waiting');
    expect(completed?.rateLimitedUntil).toBe(until);

    await runPreviewJob(next.id);

    expect(await fileStatuses(id)).toEqual([
      { path: 'src/a.ts', status: 'ready', error: null },
      { path: 'src/b.ts', status: 'ready', error: null },
    ]);
    expect(completions()).toBe(2);
    const ledger = await ledgerRows(id);
    expect(ledger.map((row) => row.path)).toEqual(['src/a.ts', 'src/b.ts']);
    expect(ledger[0]!.key).toContain(':attempt-0:');
    expect(ledger[1]!.key).toContain(':attempt-1:');
    const done = await storedRequest(id);
    expect(done.status).toBe('ready');
    expect(done.previewRateLimitedUntil).toBeNull();
    expect((await previewJson(id)).rateLimitWait).toBeNull();
    expect(await previewPage(id)).not.toContain('waits for a GitHub rate limit');
  }, 30_000);

  it('shows the wait while calls end', async () => {
    // src/a.ts's call takes 5 s, so the preview is read while that call runs.
    answerAfter(5_000);

    const { id, jobId, liftsAt, job } = await startPreviewWithLimitedSecondFile(120);
    const until = new Date(liftsAt).toISOString();
    await waitUntil(async () => (await storedRequest(id)).previewRateLimitedUntil !== null);
    const whileRunning = await previewJson(id);
    const page = await previewPage(id);
    const runPage = await runPageOf(setup.runId);
    const call = setup.groq.requests.at(-1)!;
    expect(call.reply).toBeUndefined();

    expect(whileRunning.status).toBe('running');
    expect(whileRunning.rateLimitWait).toEqual({ job: previewQueue, until, filesRunning: 1 });
    expect(whileRunning.files.map((file) => [file.path, file.status])).toEqual([
      ['src/a.ts', 'running'],
      ['src/b.ts', 'pending'],
    ]);
    const runningNotice =
      '<p class="notice rate-limit-wait">Previewing waits for a GitHub rate limit on this ' +
      `installation until <time datetime="${until}">`;
    const runningNote =
      '. 1 file that started before the limit is still running, and the other files continue ' +
      'by themselves after that time.</p>';
    expect(page).toContain('<span class="badge status-running">running</span>');
    expect(page).toContain(runningNotice);
    expect(page).toContain(runningNote);
    const item = listItemOf(runPage, id);
    expect(item).toContain(runningNotice);
    expect(item).toContain(runningNote);

    await job;
    answerAfter(0);

    const next = (await storedRequest(id)).previewJobId!;
    expect(next).not.toBe(jobId);
    const waiting = await previewJson(id);
    expect(waiting.status).toBe('running');
    expect(waiting.rateLimitWait).toEqual({ job: previewQueue, until, filesRunning: 0 });
    expect(waiting.files.map((file) => [file.path, file.status])).toEqual([
      ['src/a.ts', 'ready'],
      ['src/b.ts', 'pending'],
    ]);
    const waitingPage = await previewPage(id);
    expect(waitingPage).toContain(runningNotice);
    expect(waitingPage).not.toContain('still running');
    expect(listItemOf(await runPageOf(setup.runId), id)).toContain('then continues by itself.</p>');

    await runPreviewJob(next);

    expect((await storedRequest(id)).status).toBe('ready');
    expect(listItemOf(await runPageOf(setup.runId), id)).not.toContain('rate-limit-wait');
  }, 30_000);

  it('waits in a regeneration job', async () => {
    const [fileB] = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, waitedId))
      .orderBy(patchFiles.path)
      .offset(1);
    // A job that failed after it stored a wait leaves the time on the preview it ended.
    await context.db
      .update(patchRequests)
      .set({ previewRateLimitedUntil: new Date(Date.now() + 600_000) })
      .where(eq(patchRequests.id, waitedId));
    const payment = await loadPreviewPayment(context, user.userId);
    const regenerated = await regeneratePatchFile(context.db, context.boss, {
      userId: user.userId,
      patchRequestId: waitedId,
      fileId: fileB!.id,
      payment,
    });
    expect(regenerated.ok).toBe(true);
    expect((await storedRequest(waitedId)).previewRateLimitedUntil).toBeNull();
    expect((await previewJson(waitedId)).rateLimitWait).toBeNull();
    const jobId = (await storedRequest(waitedId)).previewJobId!;
    const limit = rateLimitFor(300);
    onContentsRead = async (path) => (path === 'src/b.ts' ? limit.response : null);
    const callsBefore = completions();

    await runPreviewJob(jobId);

    onContentsRead = null;
    expect(completions()).toBe(callsBefore);
    const waiting = await storedRequest(waitedId);
    expect(waiting.status).toBe('running');
    expect(waiting.previewJobId).not.toBe(jobId);
    expect(waiting.previewRateLimitedUntil?.getTime()).toBe(limit.liftsAt);
    expect((await previewJson(waitedId)).rateLimitWait).toEqual({
      job: previewQueue,
      until: new Date(limit.liftsAt).toISOString(),
      filesRunning: 0,
    });

    await runPreviewJob(waiting.previewJobId!);

    expect(completions()).toBe(callsBefore + 1);
    expect((await storedRequest(waitedId)).status).toBe('ready');
    const ledger = await ledgerRows(waitedId);
    expect(ledger.map((row) => row.path)).toEqual(['src/a.ts', 'src/b.ts', 'src/b.ts']);
  }, 30_000);

  it('redoes a file read before the limit once', async () => {
    const id = await createPatchRequestForRun(context, setup.runId, user.userId);
    const jobId = (await storedRequest(id)).previewJobId!;
    const limit = rateLimitFor(120);
    // src/a.ts is read after src/b.ts got the limit, so its call must not start.
    onContentsRead = async (path) => {
      if (path === 'src/b.ts') return limit.response;
      await waitUntil(() =>
        context.logs.some((line) => line.event === 'preview.file_deferred' && line.patchRequestId === id),
      );
      return null;
    };
    const callsBefore = completions();

    await runPreviewJob(jobId);

    onContentsRead = null;
    expect(completions()).toBe(callsBefore);
    expect((await fileStatuses(id)).map((file) => file.status)).toEqual(['pending', 'pending']);
    const next = (await storedRequest(id)).previewJobId!;
    expect(next).not.toBe(jobId);

    await runPreviewJob(next);

    expect(completions()).toBe(callsBefore + 2);
    expect((await ledgerRows(id)).map((row) => row.path)).toEqual(['src/a.ts', 'src/b.ts']);
    expect((await storedRequest(id)).status).toBe('ready');
  }, 30_000);

  it('fails past the maximum wait', async () => {
    // Rate-limited since 59 minutes ago, and the limit lifts in another 2.
    const { id, jobId } = await previewWithLimitedSecondFile(120, { since: Date.now() - 59 * 60_000 });

    const jobs = await previewJobs(id);
    expect(jobs.map((job) => job.state)).toEqual(['completed']);
    const request = await storedRequest(id);
    expect(request.previewJobId).toBe(jobId);
    expect(request.status).toBe('partially_ready');
    expect(request.previewRateLimitedUntil).toBeNull();
    const files = await fileStatuses(id);
    expect(files[0]).toEqual({ path: 'src/a.ts', status: 'ready', error: null });
    expect(files[1]!.status).toBe('failed');
    expect(files[1]!.error).toMatch(
      /^Preview failed: GitHub rate-limited the installation until \S+, later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS \(3600 s\) after the first rate-limited response allows\. Try again after that time\.$/,
    );
    expect((await previewJson(id)).rateLimitWait).toBeNull();
    expect((await ledgerRows(id)).map((row) => row.path)).toEqual(['src/a.ts']);
  }, 30_000);

  it('cancels the waiting job on a close', async () => {
    const { id } = await previewWithLimitedSecondFile(120);
    const next = (await storedRequest(id)).previewJobId!;

    await context.db.transaction((tx) =>
      cancelPatchRequestsOfRuns(tx, context.boss, [setup.runId], 'The pull request was closed.'),
    );

    expect((await context.boss.getJobById(previewQueue, next))!.state).toBe('cancelled');
    const cancelled = await storedRequest(id);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.previewRateLimitedUntil).toBeNull();
    expect((await previewJson(id)).rateLimitWait).toBeNull();
  }, 30_000);

  /**
   * Checks that preview `id`, which waited in job `next`, is cancelled with `reason`, that its
   * job is cancelled and no wait is left. Then it runs the job as a worker that took it before
   * the cancel would, and checks that no model is called. `charged` is the user's allowance
   * after the job that hit the limit, and it must stay so, with nothing reserved.
   */
  async function expectCancelledWait(
    id: string,
    next: string,
    reason: string,
    charged: Allowance,
  ) {
    expect((await context.boss.getJobById(previewQueue, next))!.state).toBe('cancelled');
    const cancelled = await storedRequest(id);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.error).toBe(reason);
    expect(cancelled.previewRateLimitedUntil).toBeNull();
    const json = await previewJson(id);
    expect(json.status).toBe('cancelled');
    expect(json.rateLimitWait).toBeNull();
    expect(json.files.map((file) => [file.path, file.status])).toEqual([
      ['src/a.ts', 'cancelled'],
      ['src/b.ts', 'cancelled'],
    ]);
    expect(await previewPage(id)).not.toContain('rate-limit-wait');

    const callsBefore = completions();
    const takenJob = { id: next, name: previewQueue, data: { patchRequestId: id }, retryCount: 0, retryLimit: 3 };
    await handlePreviewJob(context, takenJob as unknown as PgBoss.JobWithMetadata<PreviewJobData>);

    expect(completions()).toBe(callsBefore);
    expect((await ledgerRows(id)).map((row) => row.path)).toEqual(['src/a.ts']);
    expect(await allowanceOf(user.userId)).toEqual(charged);
    expect(charged.tokensReserved).toBe(0);
    expect(charged.reservations).toBe(0);
  }

  /**
   * Returns a preview of a new pull request `number` whose job `next` waits for a rate limit,
   * and the user's allowance after the job that hit the limit.
   */
  async function waitingPreviewOfNewPullRequest(number: number) {
    const runId = await runOfNewPullRequest(number);
    const { id } = await previewWithLimitedSecondFile(120, { runId });
    const next = (await storedRequest(id)).previewJobId!;
    expect((await previewJson(id)).rateLimitWait).not.toBeNull();
    return { runId, id, next, charged: await allowanceOf(user.userId) };
  }

  it('cancels the waiting job on a push', async () => {
    const { runId, id, next, charged } = await waitingPreviewOfNewPullRequest(2);
    const pushedSha = 'a1'.repeat(20);

    const outcome = await deliver(pullRequestEvent('synchronize', 2, pushedSha));

    expect(outcome).toMatch(/^run [0-9a-f-]{36} queued; superseded 1 older run\(s\)$/);
    const [run] = await context.db.select({ status: prRuns.status }).from(prRuns).where(eq(prRuns.id, runId));
    expect(run!.status).toBe('superseded');
    await expectCancelledWait(
      id,
      next,
      `Cancelled: the pull request has a newer commit, ${pushedSha}; request the fix on the newest run.`,
      charged,
    );
  }, 30_000);

  it('cancels the waiting job on a base change', async () => {
    const { runId, id, next, charged } = await waitingPreviewOfNewPullRequest(3);
    const retarget = pullRequestEvent('edited', 3, setup.repository.headSha);
    retarget.changes = { base: { ref: { from: 'main' }, sha: { from: setup.repository.baseSha } } };
    retarget.pull_request.base.ref = 'develop';

    const outcome = await deliver(retarget);

    expect(outcome).toBe(
      `run ${runId} queued again: the base changed from main to develop; cancelled 1 patch request(s)`,
    );
    await expectCancelledWait(
      id,
      next,
      'Cancelled because the base branch of octo/demo#3 changed from main to develop. Request ' +
        'the fix again once the new analysis has completed.',
      charged,
    );
  }, 30_000);

  it('cancels a wait while calls end', async () => {
    const runId = await runOfNewPullRequest(4);
    // src/a.ts's call takes 3 s, so the push arrives while that call runs.
    answerAfter(3_000);
    const { id, jobId, job } = await startPreviewWithLimitedSecondFile(120, { runId });
    await waitUntil(async () => (await storedRequest(id)).previewRateLimitedUntil !== null);

    await deliver(pullRequestEvent('synchronize', 4, 'b2'.repeat(20)));

    expect(setup.groq.requests.at(-1)!.reply).toBeUndefined();
    const cancelled = await storedRequest(id);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.previewRateLimitedUntil).toBeNull();
    expect((await previewJson(id)).rateLimitWait).toBeNull();

    await job;

    // The call that started before the push is charged, and nothing continues the preview.
    expect((await previewJobs(id)).map((entry) => entry.state)).toEqual(['completed']);
    const ended = await storedRequest(id);
    expect(ended.status).toBe('cancelled');
    expect(ended.previewJobId).toBe(jobId);
    expect(ended.previewRateLimitedUntil).toBeNull();
    expect((await ledgerRows(id)).map((row) => row.path)).toEqual(['src/a.ts']);
    const allowance = await allowanceOf(user.userId);
    expect(allowance.tokensReserved).toBe(0);
    expect(allowance.reservations).toBe(0);
    const skipped = context.logs.find(
      (line) => line.event === 'job.preview.completed' && line.jobId === jobId && line.status === 'skipped',
    );
    expect(skipped?.reason).toBe('it is cancelled now');
  }, 30_000);

  it('cancels the waiting job on a suspend', async () => {
    const { id } = await previewWithLimitedSecondFile(120);
    const next = (await storedRequest(id)).previewJobId!;

    await context.db.transaction((tx) =>
      cancelInstallationWork(tx, context.boss, installationId, 'The app was suspended.'),
    );

    expect((await context.boss.getJobById(previewQueue, next))!.state).toBe('cancelled');
    expect((await storedRequest(id)).status).toBe('cancelled');
    expect((await previewJson(id)).rateLimitWait).toBeNull();
  }, 30_000);
});
