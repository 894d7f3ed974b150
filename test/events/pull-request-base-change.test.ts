// A pull request retargeted to another base branch (`edited` with `changes.base`) is analyzed
// again against the new base. The repository's history is main → c1 (console.log in b.ts) →
// c2 (console.log in a.ts, the head), and branch develop points at c1. Against main the diff
// adds both lines, and against develop only the one in a.ts.
import { execFileSync } from 'node:child_process';
import { and, eq } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { findings, installations, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { applyQueue, type ApplyJobData } from '../../src/jobs/apply.ts';
import {
  fixPressNoticeQueue,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { handleReportJob, reportQueue, type ReportJobData } from '../../src/jobs/report.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import {
  createGitHubTestContext,
  insertInstallation,
  insertReadyPatchRequest,
  insertUser,
  owner,
  prNumber,
  repo,
  repository,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { createSignedInUser } from '../helpers/web.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'base-change-secret';
const newBase = 'develop';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;
/** Head of the pull request: c2. */
let headSha: string;
/** Tip of develop: c1. */
let developSha: string;

/** Posts a signed `pull_request` webhook and returns its recorded outcome. */
async function deliver(payload: Record<string, unknown>): Promise<string> {
  const response = await postSignedWebhook(app, {
    secret,
    event: 'pull_request',
    deliveryId: `base-change-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

/**
 * Returns GitHub's example `pull_request` payload for the fake's pull request at the head
 * commit against `main`, `minute` minutes past 09:00.
 */
function pullRequestEvent(action: string, minute: number): Record<string, any> {
  const payload = examplePayload('pull_request', 'opened', setup.installationId);
  payload.action = action;
  payload.number = prNumber;
  payload.repository.id = repositoryId;
  payload.repository.full_name = repository;
  payload.pull_request.number = prNumber;
  payload.pull_request.head.sha = headSha;
  payload.pull_request.head.ref = headBranch;
  payload.pull_request.head.repo.full_name = repository;
  payload.pull_request.base.ref = 'main';
  payload.pull_request.base.sha = setup.git.baseSha;
  payload.pull_request.updated_at = `2024-06-01T09:${String(minute).padStart(2, '0')}:00Z`;
  return payload;
}

/**
 * Returns the `edited` payload that GitHub sends when the pull request's base changes from
 * main to develop. The example package has no such payload, so the `opened` one gets the
 * `changes.base` object that GitHub documents for `edited`.
 */
function retargetEvent(minute: number): Record<string, any> {
  const payload = pullRequestEvent('edited', minute);
  payload.changes = { base: { ref: { from: 'main' }, sha: { from: setup.git.baseSha } } };
  payload.pull_request.base.ref = newBase;
  payload.pull_request.base.sha = developSha;
  return payload;
}

/** Moves the fake's pull request to develop, as the retarget does on GitHub. */
function retargetFake(): void {
  setup.fake.updatePullRequest(
    { owner, repo, number: prNumber },
    { baseRef: newBase, baseSha: developSha },
  );
}

/** Retargets the fake's pull request and delivers the `edited` event at 09:10. */
async function retarget(): Promise<string> {
  retargetFake();
  return deliver(retargetEvent(10));
}

async function currentRun() {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.headSha, headSha));
  return run!;
}

async function findingsOf(runId: string) {
  const rows = await setup.context.db
    .select()
    .from(findings)
    .where(eq(findings.runId, runId))
    .orderBy(findings.path, findings.startLine);
  return rows.map((row) => [row.path, row.startLine, row.ruleId]);
}

async function jobState(queue: string, id: string | null) {
  expect(id).not.toBeNull();
  return (await setup.context.boss.getJobById(queue, id!))?.state;
}

/** Fetches analyze job `jobId` as a worker does, runs it and completes it. */
async function analyze(jobId: string) {
  await runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
    handleAnalyzeJob(setup.context, job),
  );
}

/** Fetches report job `jobId` as a worker does, runs it and completes it. */
async function report(jobId: string) {
  await runDueJob<ReportJobData>(setup.context, reportQueue, jobId, (job) =>
    handleReportJob(setup.context, job),
  );
}

/** Delivers a "Fix with AI" press on `checkRun` and returns its recorded outcome. */
async function pressFix(checkRun: { id: number; externalId: string }): Promise<string> {
  const press = examplePayload('check_run', 'requested_action', setup.installationId);
  press.repository.id = repositoryId;
  press.check_run.id = checkRun.id;
  press.check_run.external_id = checkRun.externalId;
  press.requested_action = { identifier: 'fix' };
  const response = await postSignedWebhook(app, {
    secret,
    event: 'check_run',
    deliveryId: `base-change-${delivery++}`,
    payload: press,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

/** Returns the fix-press-notice jobs of the run, oldest first. */
async function noticeJobs(runId: string) {
  return setup.context.database.sql<{ id: string; data: FixPressNoticeJobData }[]>`
    SELECT id, data FROM pgboss.job
    WHERE name = ${fixPressNoticeQueue} AND data->>'runId' = ${runId}
    ORDER BY created_on, id`;
}

/** Asserts that the run of the opened pull request keeps its first analysis against main. */
async function expectFirstAnalysisKept(first: typeof prRuns.$inferSelect) {
  const stored = await currentRun();
  expect(stored.status).toBe('completed');
  expect(stored.baseRef).toBe('main');
  expect(stored.prUpdatedAt).toEqual(first.prUpdatedAt);
  expect(stored.analyzeJobId).toBe(first.analyzeJobId);
  expect(await findingsOf(stored.id)).toHaveLength(2);
}

/** Opens the pull request at 09:00 against main and analyzes its run. */
async function analyzedRun() {
  await deliver(pullRequestEvent('opened', 0));
  const queued = await currentRun();
  await analyze(queued.analyzeJobId!);
  return currentRun();
}

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/a.ts': 'export const a = 1;\n', 'src/b.ts': 'export const b = 2;\n' },
    head: { 'src/b.ts': "export const b = 2;\nconsole.log('b');\n" },
    // A platform key, so that the owner's allowance pays for a press.
    env: { WEBHOOK_SECRET: secret, GROQ_API_KEY: 'gsk_base_change_platform_key' },
  });
  developSha = setup.git.headSha;
  execFileSync('git', ['-C', setup.git.dir, 'branch', newBase, developSha]);
  headSha = await commitOnBranch(setup.git.dir, headBranch, {
    'src/a.ts': "export const a = 1;\nconsole.log('a');\n",
  });
  setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { headSha });
  app = createApp(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterEach(async () => {
  await setup?.close();
});

describe('pull request base change', () => {
  it('analyzes the new diff and reports again', async () => {
    const first = await analyzedRun();
    expect(await findingsOf(first.id)).toEqual([
      ['src/a.ts', 2, 'debug/console-log'],
      ['src/b.ts', 2, 'debug/console-log'],
    ]);
    expect(first.baseRef).toBe('main');
    await report(first.reportJobId!);
    const [oldFinding] = await setup.context.db
      .select()
      .from(findings)
      .where(and(eq(findings.runId, first.id), eq(findings.path, 'src/b.ts')));
    const user = await insertUser(setup.context);
    const preview = await createPatchRequest(setup.context.db, setup.context.boss, {
      runId: first.id,
      userId: user.id,
      findingIds: [oldFinding!.id],
    });
    if (!preview.ok) throw new Error(`patch request not created: ${preview.reason}`);
    const [request] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, preview.id));

    const outcome = await retarget();

    expect(outcome).toBe(
      `run ${first.id} queued again: the base changed from main to develop; ` +
        'cancelled 1 patch request(s)',
    );
    const queued = await currentRun();
    expect(queued.status).toBe('queued');
    expect(queued.baseRef).toBe(newBase);
    expect(queued.baseSha).toBe(developSha);
    expect(queued.prUpdatedAt?.toISOString()).toBe('2024-06-01T09:10:00.000Z');
    expect(queued.checkRunId).toBeNull();
    expect(queued.reportedAt).toBeNull();
    expect(queued.completedAt).toBeNull();
    expect(queued.analyzeJobId).not.toBe(first.analyzeJobId);
    expect(await jobState(analyzeQueue, queued.analyzeJobId)).toBe('created');
    expect(await findingsOf(first.id)).toEqual([]);
    const [cancelled] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, preview.id));
    expect(cancelled!.status).toBe('cancelled');
    expect(cancelled!.error).toBe(
      `Cancelled because the base branch of ${repository}#${prNumber} changed from main to ` +
        'develop. Request the fix again once the new analysis has completed.',
    );
    expect(await jobState(previewQueue, request!.previewJobId)).toBe('cancelled');

    await analyze(queued.analyzeJobId!);
    const again = await currentRun();
    expect(again.status).toBe('completed');
    expect(again.baseRef).toBe(newBase);
    expect(await findingsOf(again.id)).toEqual([['src/a.ts', 2, 'debug/console-log']]);
    await report(again.reportJobId!);
    expect(setup.fake.checkRuns).toHaveLength(2);
    const [oldCheckRun, newCheckRun] = setup.fake.checkRuns;
    expect(oldCheckRun!.annotations.map((annotation) => annotation.path)).toEqual([
      'src/a.ts',
      'src/b.ts',
    ]);
    expect(newCheckRun!.annotations.map((annotation) => annotation.path)).toEqual(['src/a.ts']);
    expect(newCheckRun!.headSha).toBe(headSha);
    expect(newCheckRun!.externalId).not.toBe(oldCheckRun!.externalId);
    expect((await currentRun()).checkRunId).toBe(newCheckRun!.id);
  });

  it('redirects a press on the old check run', async () => {
    const run = await analyzedRun();
    await report(run.reportJobId!);
    const [oldCheckRun] = setup.fake.checkRuns;
    await retarget();

    const outcome = await pressFix(oldCheckRun!);

    expect(outcome).toBe(
      `ignored: check run ${oldCheckRun!.id} shows an earlier analysis of run ${run.id}, whose ` +
        'newest check run is not posted yet',
    );
    const requests = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.runId, run.id));
    expect(requests).toEqual([]);
  });

  it('cancels the notice of a press', async () => {
    const payer = await insertUser(setup.context);
    await setup.context.db
      .update(installations)
      .set({ userId: payer.id })
      .where(eq(installations.id, setup.installationId));
    const run = await analyzedRun();
    await report(run.reportJobId!);
    const [oldCheckRun] = setup.fake.checkRuns;
    const pressOutcome = await pressFix(oldCheckRun!);
    expect(pressOutcome).toMatch(/^patch request [0-9a-f-]{36} queued for run /);
    // A press on a check run of an even earlier analysis, whose notice stays true.
    const earlierPress: FixPressNoticeJobData = {
      runId: run.id,
      checkRunId: 1,
      pressedAt: Date.now(),
      sender: null,
      notice: { kind: 'earlier_analysis' },
    };
    const earlierJobId = await setup.context.boss.send(fixPressNoticeQueue, earlierPress);
    const [queuedNotice] = await noticeJobs(run.id);
    expect(queuedNotice!.data.notice.kind).toBe('queued');

    await retarget();

    expect(await jobState(fixPressNoticeQueue, queuedNotice!.id)).toBe('cancelled');
    expect(await jobState(fixPressNoticeQueue, earlierJobId)).toBe('created');
    const [request] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.runId, run.id));
    expect(request!.status).toBe('cancelled');
    expect(oldCheckRun!.output.text).toBeNull();
  });

  it('shows the new base', async () => {
    const viewer = await createSignedInUser(setup.context.db, { login: 'retarget-viewer' });
    const { token } = await mintApiToken(setup.context.db, viewer.userId, 'tests');
    await setup.context.db
      .update(installations)
      .set({ userId: viewer.userId })
      .where(eq(installations.id, setup.installationId));
    const run = await analyzedRun();
    await retarget();
    await analyze((await currentRun()).analyzeJobId!);

    const page = await app.request(`/runs/${run.id}`, { headers: { cookie: viewer.cookie } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(`base <code>${developSha.slice(0, 12)}</code>`);
    expect(html).toContain('on <code class="base-ref">develop</code>');
    const api = await app.request(`/api/runs/${run.id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(api.status).toBe(200);
    const detail = (await api.json()) as { baseRef: string; baseSha: string };
    expect(detail.baseRef).toBe(newBase);
    expect(detail.baseSha).toBe(developSha);
  });

  it('cancels the queued analyze job', async () => {
    await deliver(pullRequestEvent('opened', 0));
    const opened = await currentRun();

    const outcome = await retarget();

    expect(outcome).toBe(
      `run ${opened.id} queued again: the base changed from main to develop; ` +
        'cancelled 0 patch request(s)',
    );
    const queued = await currentRun();
    expect(await jobState(analyzeQueue, opened.analyzeJobId)).toBe('cancelled');
    expect(await jobState(analyzeQueue, queued.analyzeJobId)).toBe('created');
  });

  it('keeps findings of the replaced job out', async () => {
    await deliver(pullRequestEvent('opened', 0));
    const opened = await currentRun();
    // The edit arrives while the first job reads the files against main.
    const files = defaultRoutes.find(
      (route) => route.method === 'GET' && route.pattern === '/repos/:owner/:repo/pulls/:pull_number/files',
    )!;
    let editOutcome: string | undefined;
    setup.fake.addRoute({
      ...files,
      async handle(context) {
        const response = await files.handle(context);
        if (editOutcome === undefined) {
          retargetFake();
          editOutcome = await deliver(retargetEvent(10));
        }
        return response;
      },
    });

    // A worker fetched this job before the edit cancelled it.
    const staleJob = { id: opened.analyzeJobId!, data: { runId: opened.id }, retryCount: 0, retryLimit: 4 };
    await handleAnalyzeJob(setup.context, staleJob as PgBoss.JobWithMetadata<AnalyzeJobData>);

    expect(editOutcome).toContain(`run ${opened.id} queued again`);
    const queued = await currentRun();
    expect(queued.status).toBe('queued');
    expect(queued.reportJobId).toBeNull();
    expect(await findingsOf(opened.id)).toEqual([]);
    const stopped = setup.context.logs.find(
      (line) => line.event === 'analyze.stopped' && line.jobId === opened.analyzeJobId,
    );
    expect(stopped?.reason).toBe(`the run was queued again with analyze job ${queued.analyzeJobId}`);

    await analyze(queued.analyzeJobId!);
    expect((await currentRun()).status).toBe('completed');
    expect(await findingsOf(opened.id)).toEqual([['src/a.ts', 2, 'debug/console-log']]);
  });

  it('cancels an apply waiting for a rate limit', async () => {
    const run = await analyzedRun();
    const user = await insertUser(setup.context);
    const request = await insertReadyPatchRequest(setup.context, {
      runId: run.id,
      userId: user.id,
      files: [{ path: 'src/a.ts', originalText: "console.log('a');\n", proposedText: '' }],
    });
    const data: ApplyJobData = { patchRequestId: request.id, userId: user.id, rateLimitedSince: Date.now() };
    const jobId = await setup.context.boss.send(applyQueue, data, { startAfter: 600 });
    await setup.context.db
      .update(patchRequests)
      .set({ applyJobId: jobId, applyRateLimitedUntil: new Date(Date.now() + 600_000) })
      .where(eq(patchRequests.id, request.id));

    const outcome = await retarget();

    expect(outcome).toBe(
      `run ${run.id} queued again: the base changed from main to develop; ` +
        'cancelled 0 patch request(s) and 1 apply job(s)',
    );
    expect(await jobState(applyQueue, jobId)).toBe('cancelled');
    const [stored] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(stored!.status).toBe('ready');
    expect(stored!.applyRateLimitedUntil).toBeNull();
    expect(stored!.applyError).toBe(
      `The apply was cancelled because the base branch of ${repository}#${prNumber} changed ` +
        'from main to develop. Check the new analysis, then apply again.',
    );
  });

  it('creates a run when the head has none', async () => {
    const outcome = await retarget();

    const run = await currentRun();
    expect(outcome).toBe(`run ${run.id} queued`);
    expect(run.status).toBe('queued');
    expect(run.baseRef).toBe(newBase);
    expect(run.baseSha).toBe(developSha);
    await analyze(run.analyzeJobId!);
    expect(await findingsOf(run.id)).toEqual([['src/a.ts', 2, 'debug/console-log']]);
  });

  it('ignores a title edit', async () => {
    const run = await analyzedRun();
    const payload = pullRequestEvent('edited', 10);
    payload.changes = { title: { from: 'Old title' } };

    const outcome = await deliver(payload);

    expect(outcome).toBe('ignored: pull_request action "edited"');
    await expectFirstAnalysisKept(run);
  });

  it('ignores an edit older than the run', async () => {
    await deliver(pullRequestEvent('opened', 20));
    const queued = await currentRun();
    await analyze(queued.analyzeJobId!);
    const run = await currentRun();

    const outcome = await deliver(retargetEvent(10));

    expect(outcome).toBe(
      `ignored: run ${queued.id} records a later event of ${repository}#${prNumber}, at ` +
        '2024-06-01T09:20:00.000Z, than this base change',
    );
    await expectFirstAnalysisKept(run);
  });

  it('ignores an edit of a closed pull request', async () => {
    const run = await analyzedRun();
    const closedEdit = retargetEvent(10);
    closedEdit.pull_request.state = 'closed';
    closedEdit.pull_request.closed_at = '2024-06-01T09:05:00Z';

    const closedOutcome = await deliver(closedEdit);

    expect(closedOutcome).toBe(
      `ignored: ${repository}#${prNumber} is closed, so its base change to develop starts no analysis`,
    );
    const closed = pullRequestEvent('closed', 30);
    closed.pull_request.state = 'closed';
    closed.pull_request.closed_at = '2024-06-01T09:30:00Z';
    await deliver(closed);
    // An edit from before the close, delivered after it.
    const lateOutcome = await deliver(retargetEvent(20));

    expect(lateOutcome).toBe(
      `ignored: ${repository}#${prNumber} was closed at 2024-06-01T09:30:00.000Z, after this event`,
    );
    await expectFirstAnalysisKept(run);
  });

  it('ignores a base change delivered again', async () => {
    await analyzedRun();
    await retarget();
    await analyze((await currentRun()).analyzeJobId!);
    const analyzed = await currentRun();
    const user = await insertUser(setup.context);
    const [finding] = await setup.context.db.select().from(findings).where(eq(findings.runId, analyzed.id));
    const preview = await createPatchRequest(setup.context.db, setup.context.boss, {
      runId: analyzed.id,
      userId: user.id,
      findingIds: [finding!.id],
    });
    if (!preview.ok) throw new Error(`patch request not created: ${preview.reason}`);

    // The same event again under another delivery id, as `fixwright receive` sends it.
    const outcome = await deliver(retargetEvent(10));

    expect(outcome).toBe(
      `ignored: run ${analyzed.id} was queued for this base change of ${repository}#${prNumber} ` +
        'to develop at 2024-06-01T09:10:00.000Z',
    );
    const stored = await currentRun();
    expect(stored.status).toBe('completed');
    expect(stored.analyzeJobId).toBe(analyzed.analyzeJobId);
    expect(stored.reportJobId).toBe(analyzed.reportJobId);
    expect(await findingsOf(stored.id)).toEqual([['src/a.ts', 2, 'debug/console-log']]);
    const [request] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, preview.id));
    expect(request!.status).toBe('queued');
  });

  it('analyzes a failed run again on a redelivery', async () => {
    await deliver(pullRequestEvent('opened', 0));
    await retarget();
    const queued = await currentRun();
    await setup.context.db
      .update(prRuns)
      .set({ status: 'failed', error: 'Analysis failed: GitHub returned 502.' })
      .where(eq(prRuns.id, queued.id));

    const outcome = await deliver(retargetEvent(10));

    expect(outcome).toBe(
      `run ${queued.id} queued again: the base changed from main to develop; ` +
        'cancelled 0 patch request(s)',
    );
    const again = await currentRun();
    expect(again.status).toBe('queued');
    expect(again.error).toBeNull();
    expect(again.analyzeJobId).not.toBe(queued.analyzeJobId);
  });

  it('ignores an edit that keeps the base', async () => {
    const run = await analyzedRun();
    const payload = pullRequestEvent('edited', 10);
    payload.changes = { base: { ref: { from: 'main' }, sha: { from: setup.git.baseSha } } };

    const outcome = await deliver(payload);

    expect(outcome).toBe(`ignored: the base branch of ${repository}#${prNumber} stays main`);
    await expectFirstAnalysisKept(run);
  });

  it('accepts a base change without the old sha', async () => {
    const run = await analyzedRun();
    retargetFake();
    const payload = retargetEvent(10);
    payload.changes = { base: { ref: { from: 'main' } }, title: { from: 'Old title' } };

    const outcome = await deliver(payload);

    expect(outcome).toBe(
      `run ${run.id} queued again: the base changed from main to develop; ` +
        'cancelled 0 patch request(s)',
    );
    expect((await currentRun()).baseRef).toBe(newBase);
  });

  it('names the stored base without the old ref', async () => {
    const run = await analyzedRun();
    retargetFake();
    const payload = retargetEvent(10);
    payload.changes = { base: { sha: { from: setup.git.baseSha } } };

    const outcome = await deliver(payload);

    expect(outcome).toBe(
      `run ${run.id} queued again: the base changed from main to develop; ` +
        'cancelled 0 patch request(s)',
    );
  });

  it('rejects a base change of the wrong type', async () => {
    const payload = retargetEvent(10);
    payload.changes = { base: { ref: 'main', sha: { from: 7 } } };

    const response = await postSignedWebhook(app, {
      secret,
      event: 'pull_request',
      deliveryId: `base-change-${delivery++}`,
      payload,
    });

    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toContain('changes.base.ref: ');
    expect(body.error.message).toContain('changes.base.sha.from: ');
    expect(await setup.context.db.select().from(prRuns)).toEqual([]);
  });

  it('rejects an overlong branch name', async () => {
    // 513 two-byte characters: 1,026 bytes of UTF-8, though only 513 UTF-16 code units.
    const overlong = 'é'.repeat(513);
    const fields: [string, (payload: Record<string, any>) => void][] = [
      ['pull_request.base.ref', (payload) => (payload.pull_request.base.ref = overlong)],
      ['pull_request.head.ref', (payload) => (payload.pull_request.head.ref = overlong)],
      ['changes.base.ref.from', (payload) => (payload.changes.base.ref.from = overlong)],
    ];
    for (const [field, setField] of fields) {
      const payload = retargetEvent(10);
      setField(payload);

      const response = await postSignedWebhook(app, {
        secret,
        event: 'pull_request',
        deliveryId: `base-change-${delivery++}`,
        payload,
      });

      expect(response.status, field).toBe(400);
      const body = (await response.json()) as { error: { message: string } };
      expect(body.error.message).toContain(
        `${field}: must be at most 1024 bytes of UTF-8, because GitHub rejects refs longer ` +
          'than 255 bytes',
      );
    }
    expect(await setup.context.db.select().from(prRuns)).toEqual([]);
  });

  it('accepts long branch names', async () => {
    const run = await analyzedRun();
    // GitHub's maximum: refs/heads/ and the name make 255 bytes.
    const longest = `release/${'x'.repeat(236)}`;
    // The schema's own limit, in two-byte characters.
    const atLimit = 'é'.repeat(512);
    retargetFake();
    const payload = retargetEvent(10);
    payload.pull_request.base.ref = longest;
    payload.changes.base.ref.from = atLimit;

    const outcome = await deliver(payload);

    expect(Buffer.byteLength(`refs/heads/${longest}`)).toBe(255);
    expect(outcome).toBe(
      `run ${run.id} queued again: the base changed from ${atLimit} to ${longest}; ` +
        'cancelled 0 patch request(s)',
    );
    expect((await currentRun()).baseRef).toBe(longest);
  });

  it('skips a suspended installation', async () => {
    const run = await analyzedRun();
    await setup.context.database.sql`
      UPDATE installations SET suspended_at = now() WHERE id = ${setup.installationId}`;

    const outcome = await deliver(retargetEvent(10));

    expect(outcome).toMatch(/^skipped: /);
    expect(outcome).toContain(String(setup.installationId));
    await expectFirstAnalysisKept(run);
  });
});
