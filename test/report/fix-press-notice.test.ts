import { randomBytes, randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchRequests, platformKeyRejections, prRuns, users } from '../../src/db/schema/index.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import {
  fixPressNoticeQueue,
  handleFixPressNoticeJob,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { escapeMarkdown, fixPressText } from '../../src/report/fix-press-notice.ts';
import { publishFixPressNotice } from '../../src/report/publish-fix-press-notice.ts';
import { checkRunLockKey, reportRun } from '../../src/report/report-run.ts';
import { withSessionLock } from '../../src/runs/run-lock.ts';
import { createApp } from '../../src/web/app.tsx';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertWarnedRun,
  prNumber,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { fixPressWebhooks, listNoticeJobs, queuedPreviewText } from '../helpers/fix-press.ts';
import { recordGroqKeyRejection } from '../helpers/platform-key-rejection.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

const secret = 'fix-press-notice-secret';
const publicUrl = 'https://fixwright.example.test';
const checkRunPath = /^\/repos\/octo-org\/widgets\/check-runs\/\d+$/;

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let ownerId: string;
/** While set, an update that adds annotations waits for this promise before GitHub handles it. */
let annotationGate: Promise<void> | null = null;

/** A check run request that GitHub holds until the test releases it. */
interface HeldRequest {
  method: 'GET' | 'PATCH';
  checkRunId: number;
  /** Resolves when the request has arrived. */
  reached: Promise<void>;
  release: () => void;
  arrive: () => void;
  released: Promise<void>;
}

/** The next request to hold. Only its first matching request is held. */
let heldRequest: HeldRequest | null = null;

/** Makes GitHub hold the next `method` request to check run `checkRunId` until released. */
function holdCheckRunRequest(method: 'GET' | 'PATCH', checkRunId: number): HeldRequest {
  let arrive = () => {};
  let release = () => {};
  const reached = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  heldRequest = { method, checkRunId, reached, release, arrive, released };
  return heldRequest;
}

/** Waits at a held request, then clears the hold so that later requests pass. */
async function waitIfHeld(method: string, checkRunId: string | undefined): Promise<void> {
  const held = heldRequest;
  if (!held || held.method !== method || String(held.checkRunId) !== checkRunId) return;
  heldRequest = null;
  held.arrive();
  await held.released;
}

/** Creates a completed run with `count` warnings on a new head commit. */
const warnedRun = (count: number) => insertWarnedRun(setup, count);

/** Creates a completed run with `count` warnings and reports it, which creates its check run. */
async function reportedRun(count: number) {
  const run = await warnedRun(count);
  await reportRun(setup.context, run.id, setup.context.logger);
  const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
  const checkRun = setup.fake.checkRuns.find((candidate) => candidate.id === stored!.checkRunId)!;
  return { run, checkRun };
}

const webhooks = fixPressWebhooks({
  setup: () => setup,
  app: () => app,
  secret,
  prefix: 'fix-press-notice',
});

/** Delivers a signed press of "Fix with AI" on the check run, as GitHub sends it. */
const press = webhooks.press;

const noticeJobs = (runId: string) => listNoticeJobs(setup.context, runId);

/** Waits until pg-boss has completed or failed the job, and returns its state. */
async function waitForJob(jobId: string) {
  for (let waited = 0; waited < 20_000; waited += 100) {
    const job = await setup.context.boss.getJobById(fixPressNoticeQueue, jobId);
    if (job && ['completed', 'retry', 'failed'].includes(job.state)) return job;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`job ${jobId} did not finish within 20 s`);
}

/** Presses the button and waits for the one notice job that the press queued. */
async function pressAndPublish(runId: string, checkRunId: number, sender?: string) {
  await press(checkRunId, sender);
  const jobs = await noticeJobs(runId);
  expect(jobs).toHaveLength(1);
  return { job: await waitForJob(jobs[0]!.id), data: jobs[0]!.data };
}

/**
 * Reports a run with two warnings, presses its button and waits for the notice. Checks that
 * the press queued `notice`, created no patch request, left the owner's allowance as it was and
 * kept the check run's summary and annotations, and returns the check run's text.
 */
async function pressWithoutPreview(notice: FixPressNoticeJobData['notice']): Promise<string> {
  const { run, checkRun } = await reportedRun(2);
  const summary = checkRun.output.summary;
  const allowanceOf = async () => {
    const [owner] = await setup.context.db.select().from(users).where(eq(users.id, ownerId));
    return { tokensUsed: owner!.tokensUsed, tokensReserved: owner!.tokensReserved };
  };
  const before = await allowanceOf();

  const { job, data } = await pressAndPublish(run.id, checkRun.id);

  expect(job.state).toBe('completed');
  expect(data.notice).toEqual(notice);
  const requests = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.runId, run.id));
  expect(requests).toEqual([]);
  expect(before.tokensUsed).toBe(120);
  expect(await allowanceOf()).toEqual(before);
  const checkRunAfter = setup.fake.checkRuns.find((candidate) => candidate.id === checkRun.id)!;
  expect(checkRunAfter.output.summary).toBe(summary);
  expect(checkRunAfter.output.text).not.toContain(ownerId);
  expect(checkRunAfter.annotations).toHaveLength(2);
  return checkRunAfter.output.text ?? '';
}

/** Returns the URL of a check run of the fake's pull request, as notices link to it. */
function checkRunUrlOf(checkRunId: number): string {
  return (
    `${setup.context.config.GITHUB_URL}/octo-org/widgets/pull/${prNumber}/checks` +
    `?check_run_id=${checkRunId}`
  );
}

/**
 * Reports `run` again as a new analysis of its commit does, which posts a new check run, and
 * returns that check run's id. The check run of the earlier analysis keeps its output.
 */
async function reportAgain(runId: string): Promise<number> {
  await setup.context.db
    .update(prRuns)
    .set({ analyzeJobId: randomUUID(), checkRunId: null, checkRunAnnotations: 0 })
    .where(eq(prRuns.id, runId));
  await reportRun(setup.context, runId, setup.context.logger);
  const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return stored!.checkRunId!;
}

function updatesOf(checkRunId: number, since: number) {
  return setup.fake.requests
    .slice(since)
    .filter(
      (request) =>
        request.method === 'PATCH' &&
        checkRunPath.test(request.path) &&
        request.path.endsWith(`/${checkRunId}`),
    );
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
    // A platform key, so that the owner's allowance pays for the preview.
    env: { WEBHOOK_SECRET: secret, PUBLIC_URL: publicUrl, GROQ_API_KEY: 'gsk_notice_platform' },
  });
  const [owner] = await setup.context.db
    .insert(users)
    .values({ login: 'notice-owner' })
    .returning();
  ownerId = owner!.id;
  await insertInstallation(setup.context, { id: setup.installationId, userId: ownerId });
  app = createApp(setup.context);
  const update = checkRoutes.find(
    (route) => route.method === 'PATCH' && route.pattern.endsWith('/check-runs/:check_run_id'),
  )!;
  setup.fake.addRoute({
    ...update,
    async handle(context) {
      const body = context.request.body as { output?: { annotations?: unknown[] } } | null;
      const output = body?.output;
      if (annotationGate && (output?.annotations?.length ?? 0) > 0) await annotationGate;
      await waitIfHeld('PATCH', context.params.check_run_id);
      return update.handle(context);
    },
  });
  const read = checkRoutes.find(
    (route) => route.method === 'GET' && route.pattern.endsWith('/check-runs/:check_run_id'),
  )!;
  setup.fake.addRoute({
    ...read,
    async handle(context) {
      await waitIfHeld('GET', context.params.check_run_id);
      return read.handle(context);
    },
  });
  // The worker as startWorkers runs it, so that completion and retries are pg-boss's own.
  await setup.context.boss.work<FixPressNoticeJobData>(
    fixPressNoticeQueue,
    { includeMetadata: true, batchSize: 1, pollingIntervalSeconds: 0.5 },
    async ([job]) => {
      if (job) await handleFixPressNoticeJob(setup.context, job);
    },
  );
});

afterAll(async () => {
  await setup?.close();
});

describe('fix press notice on the check run', () => {
  it('shows a queued preview with its link', async () => {
    await setup.context.db.update(users).set({ tokensUsed: 0 }).where(eq(users.id, ownerId));
    const { run, checkRun } = await reportedRun(3);
    const before = { ...checkRun.output };
    const annotations = checkRun.annotations.length;
    const since = setup.fake.requests.length;

    const { job, data } = await pressAndPublish(run.id, checkRun.id, 'a-reviewer');

    expect(job.state).toBe('completed');
    const [request] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.runId, run.id));
    expect(data.notice).toEqual({
      kind: 'queued',
      patchRequestId: request!.id,
      files: 1,
      leftOutFiles: 0,
      leftOutFindings: 0,
    });
    const after = setup.fake.checkRuns.find((candidate) => candidate.id === checkRun.id)!;
    expect(after.output.title).toBe(before.title);
    expect(after.output.summary).toBe(before.summary);
    expect(after.output.text).toBe(queuedPreviewText(data, publicUrl, request!.id));
    expect(after.output.text).not.toContain(ownerId);
    const updates = updatesOf(checkRun.id, since);
    expect(updates).toHaveLength(1);
    const output = (updates[0]!.body as { output: Record<string, unknown> }).output;
    expect(Object.keys(output).sort()).toEqual(['summary', 'text', 'title']);
    expect(after.annotations).toHaveLength(annotations);
    expect(annotations).toBe(3);
  });

  it('shows why a press over the allowance queued nothing', async () => {
    await setup.context.db.update(users).set({ tokensUsed: 1000 }).where(eq(users.id, ownerId));
    const { run, checkRun } = await reportedRun(2);
    const summary = checkRun.output.summary;

    const { job, data } = await pressAndPublish(run.id, checkRun.id);

    expect(job.state).toBe('completed');
    expect(data.notice).toEqual({ kind: 'no_file_fits', files: 1 });
    expect(await setup.context.db.select().from(patchRequests).where(eq(patchRequests.runId, run.id))).toEqual([]);
    const after = setup.fake.checkRuns.find((candidate) => candidate.id === checkRun.id)!;
    expect(after.output.summary).toBe(summary);
    expect(after.output.text).toContain(
      'Nothing was queued, because the token allowance left of the user who installed the app ' +
        "does not cover the estimate of the run's one file. That user can wait for the " +
        'next period, add their own Groq or Gemini key on the Fixwright dashboard or ask a ' +
        'Fixwright admin for a larger allowance, then press **Fix with AI** again.',
    );
    expect(after.output.text).not.toContain('1000');
    expect(after.output.text).not.toContain(ownerId);
    expect(after.annotations).toHaveLength(2);
  });

  it('shows a rejected platform key', async () => {
    await setup.context.db.update(users).set({ tokensUsed: 120 }).where(eq(users.id, ownerId));
    await recordGroqKeyRejection(setup.context.db, 'gsk_notice_platform');
    try {
      const text = await pressWithoutPreview({ kind: 'platform_key_rejected', provider: 'groq', status: 401 });

      expect(text).toContain(
        'Nothing was queued, because Groq rejected the Groq key that the operator of this ' +
          'Fixwright service provides (HTTP 401). The user who installed the app can save their ' +
          'own Groq or Gemini key on the [keys page of the Fixwright dashboard]' +
          `(${publicUrl}/keys), or the operator can replace the key in the \`GROQ_API_KEY\` ` +
          'environment variable, then press **Fix with AI** again.',
      );
      expect(text).not.toContain('gsk_notice_platform');
    } finally {
      await setup.context.db.delete(platformKeyRejections);
    }
  });

  it('shows that no model provider is available', async () => {
    await setup.context.db.update(users).set({ tokensUsed: 120 }).where(eq(users.id, ownerId));
    // The webhook as a process started without GROQ_API_KEY and GEMINI_API_KEY receives it.
    const withPlatformKey = app;
    app = createApp({
      ...setup.context,
      config: { ...setup.context.config, GROQ_API_KEY: undefined, GEMINI_API_KEY: undefined },
    });
    try {
      const text = await pressWithoutPreview({ kind: 'no_provider', unusableOwnKeys: [] });

      expect(text).toContain(
        'Nothing was queued. No model provider is available for previews: this service has no ' +
          'platform key (neither GROQ_API_KEY nor GEMINI_API_KEY is set), and the user who ' +
          'installed the app has no Groq or Gemini key of their own. That user can save their ' +
          'own Groq or Gemini key on the [keys page of the Fixwright dashboard]' +
          `(${publicUrl}/keys), or the operator of this service can set GROQ_API_KEY or ` +
          'GEMINI_API_KEY. Then press **Fix with AI** again.',
      );
    } finally {
      app = withPlatformKey;
    }
  });

  it('shows a preview already in progress', async () => {
    await setup.context.db.update(users).set({ tokensUsed: 0 }).where(eq(users.id, ownerId));
    const { run, checkRun } = await reportedRun(1);
    await press(checkRun.id);
    await press(checkRun.id);
    const jobs = await noticeJobs(run.id);
    expect(jobs.map((job) => job.data.notice.kind)).toEqual(['queued', 'in_progress']);
    for (const job of jobs) expect((await waitForJob(job.id)).state).toBe('completed');

    const after = setup.fake.checkRuns.find((candidate) => candidate.id === checkRun.id)!;
    const [request] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.runId, run.id));
    expect(after.output.text).toContain(
      'Nothing new was queued, because a preview of this run is already queued or running. ' +
        'It appears [on the Fixwright dashboard of the user who installed the app]' +
        `(${publicUrl}/patch-requests/${request!.id}). Wait until it finishes, then press ` +
        '**Fix with AI** again for another one.',
    );
    expect(after.annotations).toHaveLength(1);
  });

  it('completes without retry for a deleted check run', async () => {
    const { run, checkRun } = await reportedRun(1);
    setup.fake.removeCheckRun(checkRun.id);

    const { job } = await pressAndPublish(run.id, checkRun.id);

    expect(job.state).toBe('completed');
    expect(job.retryCount).toBe(0);
    const logged = setup.context.logs.find(
      (line) => line.event === 'fix_press_notice.check_run_missing' && line.checkRunId === checkRun.id,
    );
    expect(logged).toBeDefined();
    const failed = setup.context.logs.find(
      (line) => line.event === 'job.fix_press_notice.failed' && line.checkRunId === checkRun.id,
    );
    expect(failed).toBeUndefined();
  });

  it('keeps the notice of a later press', async () => {
    const { run, checkRun } = await reportedRun(1);
    const input = { runId: run.id, checkRunId: checkRun.id, sender: 'a-reviewer' };
    const later = { ...input, pressedAt: 2_000_000_000_000, notice: { kind: 'no_findings' } as const };
    const earlier = { ...later, pressedAt: 1_900_000_000_000, notice: { kind: 'no_owner' } as const };

    const first = await publishFixPressNotice(setup.context, later, setup.context.logger);
    const second = await publishFixPressNotice(setup.context, earlier, setup.context.logger);

    expect(first).toEqual({ status: 'updated' });
    expect(second).toEqual({ status: 'skipped', reason: 'the check run shows a later press' });
    const after = setup.fake.checkRuns.find((candidate) => candidate.id === checkRun.id)!;
    expect(after.output.text).toContain('this run has no findings to fix');
    expect(after.output.text).not.toContain('no owner');
  });

  it('waits for the report to finish', async () => {
    const run = await warnedRun(120);
    let openGate = () => {};
    annotationGate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    try {
      // The report creates the check run with 50 annotations and then waits in its first update.
      const report = reportRun(setup.context, run.id, setup.context.logger);
      let checkRunId: number | null = null;
      for (let waited = 0; checkRunId === null && waited < 10_000; waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
        checkRunId = stored!.checkRunId;
      }
      expect(checkRunId).not.toBeNull();
      const notice = publishFixPressNotice(
        setup.context,
        {
          runId: run.id,
          checkRunId: checkRunId!,
          pressedAt: Date.now(),
          sender: null,
          notice: { kind: 'no_owner' },
        },
        setup.context.logger,
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      openGate();
      await report;
      expect(await notice).toEqual({ status: 'updated' });

      const after = setup.fake.checkRuns.find((candidate) => candidate.id === checkRunId)!;
      expect(after.annotations).toHaveLength(120);
      expect(after.output.text).toContain('Fixwright has no owner recorded');
    } finally {
      openGate();
      annotationGate = null;
    }
  });

  it('keeps the notice over a retried report', async () => {
    const run = await warnedRun(120);
    // The report's first annotation update fails before GitHub stores it, so the attempt fails.
    setup.fake.queueResponse({
      method: 'PATCH',
      path: '/repos/:owner/:repo/check-runs/:check_run_id',
      status: 502,
    });
    const failed = await reportRun(setup.context, run.id, setup.context.logger).catch(
      (error: unknown) => error,
    );
    expect((failed as { status?: number }).status).toBe(502);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    const checkRunId = stored!.checkRunId!;
    const notice = await publishFixPressNotice(
      setup.context,
      { runId: run.id, checkRunId, pressedAt: Date.now(), sender: null, notice: { kind: 'no_owner' } },
      setup.context.logger,
    );
    expect(notice).toEqual({ status: 'updated' });
    const checkRun = setup.fake.checkRuns.find((candidate) => candidate.id === checkRunId)!;
    const text = checkRun.output.text;
    expect(text).toContain('Fixwright has no owner recorded');
    const since = setup.fake.requests.length;

    await reportRun(setup.context, run.id, setup.context.logger);

    expect(checkRun.annotations).toHaveLength(120);
    expect(checkRun.output.text).toBe(text);
    const updates = updatesOf(checkRunId, since);
    expect(updates).toHaveLength(2);
    for (const update of updates) {
      expect((update.body as { output: { text?: string } }).output.text).toBe(text);
    }
  });

  it('leaves the check run of a newer run alone', async () => {
    const { run, checkRun } = await reportedRun(1);
    const newer = await reportedRun(1);
    const since = setup.fake.requests.length;

    const outcome = await publishFixPressNotice(
      setup.context,
      {
        runId: run.id,
        checkRunId: newer.checkRun.id,
        pressedAt: Date.now(),
        sender: null,
        notice: { kind: 'no_findings' },
      },
      setup.context.logger,
    );

    expect(outcome).toEqual({
      status: 'skipped',
      reason: `check run ${newer.checkRun.id} is not the run's`,
    });
    expect(updatesOf(newer.checkRun.id, since)).toEqual([]);
    expect(updatesOf(checkRun.id, since)).toEqual([]);
  });

  it('tells a superseded run to use the newest check run', async () => {
    const { run, checkRun } = await reportedRun(1);
    await setup.context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, run.id));

    const { data } = await pressAndPublish(run.id, checkRun.id);

    expect(data.notice).toEqual({ kind: 'run_not_completed', status: 'superseded' });
    const after = setup.fake.checkRuns.find((candidate) => candidate.id === checkRun.id)!;
    expect(after.output.text).toContain(
      'Nothing was queued, because a newer commit of the pull request has its own check run. ' +
        'Press **Fix with AI** on the check run of the newest commit.',
    );
  });

  it('points an earlier check run to the newer one', async () => {
    const { run, checkRun } = await reportedRun(2);
    const before = { ...checkRun.output };
    // A completed analysis of the same commit, as analyzeRun stores it, then its report.
    await setup.context.db
      .update(prRuns)
      .set({ analyzeJobId: randomUUID(), checkRunId: null, checkRunAnnotations: 0 })
      .where(eq(prRuns.id, run.id));
    await reportRun(setup.context, run.id, setup.context.logger);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    const since = setup.fake.requests.length;

    const { job, data } = await pressAndPublish(run.id, checkRun.id);

    expect(job.state).toBe('completed');
    expect(data.notice).toEqual({ kind: 'earlier_analysis' });
    expect(stored!.checkRunId).not.toBe(checkRun.id);
    expect(updatesOf(stored!.checkRunId!, since)).toEqual([]);
    const after = setup.fake.checkRuns.find((candidate) => candidate.id === checkRun.id)!;
    expect(after.output.title).toBe(before.title);
    expect(after.output.summary).toBe(before.summary);
    expect(after.output.text).toContain(
      'Nothing was queued, because this commit was analyzed again, and the results of that ' +
        'analysis appear in [a newer Fixwright check run]' +
        `(${checkRunUrlOf(stored!.checkRunId!)}). ` +
        'Press **Fix with AI** there.',
    );
    const completed = await completionOf(job.id);
    expect(completed.status).toBe('updated');
    expect(completed.newerCheckRunId).toBe(stored!.checkRunId);
    const requests = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.runId, run.id));
    expect(requests).toEqual([]);
  });

  it('redirects a press to the new check run', async () => {
    // The press came while the run was analyzed again, and the job starts after its report.
    const { run, checkRun } = await reportedRun(1);
    const before = { ...checkRun.output };
    const newerCheckRunId = await reportAgain(run.id);
    const since = setup.fake.requests.length;

    const outcome = await publishFixPressNotice(
      setup.context,
      {
        runId: run.id,
        checkRunId: checkRun.id,
        pressedAt: Date.now(),
        sender: 'a-reviewer',
        notice: { kind: 'run_not_completed', status: 'analyzing' },
      },
      setup.context.logger,
    );

    const reason =
      `check run ${checkRun.id} is not the run's, whose newest check run is ${newerCheckRunId}`;
    expect(outcome).toEqual({ status: 'redirected', reason, newerCheckRunId });
    expect(checkRun.output.title).toBe(before.title);
    expect(checkRun.output.summary).toBe(before.summary);
    expect(checkRun.output.text).toContain(
      'Nothing was queued, because this commit was analyzed again, and the results of that ' +
        `analysis appear in [a newer Fixwright check run](${checkRunUrlOf(newerCheckRunId)}). ` +
        'Press **Fix with AI** there.',
    );
    expect(checkRun.output.text).not.toContain('is being analyzed again');
    expect(updatesOf(checkRun.id, since)).toHaveLength(1);
    expect(updatesOf(newerCheckRunId, since)).toEqual([]);
    const logged = setup.context.logs.filter(
      (line) => line.event === 'fix_press_notice.redirected' && line.checkRunId === checkRun.id,
    );
    expect(logged).toHaveLength(1);
    expect(logged[0]!.newerCheckRunId).toBe(newerCheckRunId);
  });

  it('redirects a press that waits for the report', async () => {
    const { run, checkRun } = await reportedRun(1);
    const before = { ...checkRun.output };
    const newerCheckRunId = await reportAgain(run.id);
    // The run as it was before that report: analyzed again, still naming the pressed check run.
    await setup.context.db
      .update(prRuns)
      .set({ status: 'analyzing', checkRunId: checkRun.id })
      .where(eq(prRuns.id, run.id));
    const since = setup.fake.requests.length;

    let notice: ReturnType<typeof publishFixPressNotice> | undefined;
    // The report holds the run's check run lock while it posts the new check run.
    await withSessionLock(setup.context.db, checkRunLockKey(run.id), async () => {
      notice = publishFixPressNotice(
        setup.context,
        {
          runId: run.id,
          checkRunId: checkRun.id,
          pressedAt: Date.now(),
          sender: null,
          notice: { kind: 'run_not_completed', status: 'analyzing' },
        },
        setup.context.logger,
      );
      await waitForLockWait(setup.context);
      await setup.context.db
        .update(prRuns)
        .set({ status: 'completed', checkRunId: newerCheckRunId })
        .where(eq(prRuns.id, run.id));
    });
    const outcome = await notice!;

    const reason =
      `check run ${checkRun.id} is no longer the run's, whose newest check run is ` +
      `${newerCheckRunId}`;
    expect(outcome).toEqual({ status: 'redirected', reason, newerCheckRunId });
    const updates = updatesOf(checkRun.id, since);
    expect(updates).toHaveLength(1);
    expect((updates[0]!.body as { output: Record<string, unknown> }).output).toEqual({
      title: before.title,
      summary: before.summary,
      text: checkRun.output.text,
    });
    expect(checkRun.output.text).toContain(
      `[a newer Fixwright check run](${checkRunUrlOf(newerCheckRunId)})`,
    );
  });

  it('names the new check run of a skipped press', async () => {
    const { run, checkRun, job, held, since } = await pressAndHold('GET');
    try {
      const newerCheckRunId = 9_000_000 + checkRun.id;
      // A cancelled notice job writes nothing, but its skip still names the new check run.
      await setup.context.boss.cancel(fixPressNoticeQueue, job.id);
      await setup.context.db
        .update(prRuns)
        .set({ checkRunId: newerCheckRunId })
        .where(eq(prRuns.id, run.id));

      held.release();
      const completed = await completionOf(job.id);

      expect(completed.status).toBe('skipped');
      expect(completed.newerCheckRunId).toBe(newerCheckRunId);
      expect(completed.reason).toBe(
        `check run ${checkRun.id} is no longer the run's, whose newest check run is ` +
          `${newerCheckRunId}, and notice job ${job.id} is cancelled`,
      );
      expect(updatesOf(checkRun.id, since)).toEqual([]);
    } finally {
      held.release();
    }
  });

  it('names the new check run of a cancelled redirect', async () => {
    const { run, checkRun } = await reportedRun(1);
    const newerCheckRunId = await reportAgain(run.id);
    const data: FixPressNoticeJobData = {
      runId: run.id,
      checkRunId: checkRun.id,
      pressedAt: Date.now(),
      sender: null,
      notice: { kind: 'earlier_analysis' },
    };
    // Sent with a start time far ahead, so that the worker of this file leaves it alone.
    const jobId = (await setup.context.boss.send(fixPressNoticeQueue, data, { startAfter: 3600 }))!;
    await setup.context.boss.cancel(fixPressNoticeQueue, jobId);
    const since = setup.fake.requests.length;

    const outcome = await publishFixPressNotice(
      setup.context,
      { ...data, job: { queue: fixPressNoticeQueue, id: jobId } },
      setup.context.logger,
    );

    expect(outcome).toEqual({
      status: 'skipped',
      reason: `notice job ${jobId} is cancelled`,
      newerCheckRunId,
    });
    expect(updatesOf(checkRun.id, since)).toEqual([]);
  });

  it('queues no notice for a suspended installation', async () => {
    const { run, checkRun } = await reportedRun(1);
    await setup.context.database.sql`
      UPDATE installations SET suspended_at = now() WHERE id = ${setup.installationId}`;
    try {
      await press(checkRun.id);
      expect(await noticeJobs(run.id)).toEqual([]);
    } finally {
      await setup.context.database.sql`
        UPDATE installations SET suspended_at = NULL WHERE id = ${setup.installationId}`;
    }
  });
});

/** Pushes a new commit to the pull request, which supersedes `run`. */
async function pushNewCommit(run: { headSha: string }) {
  await webhooks.pullRequestEvent(run.headSha, (payload) => {
    payload.action = 'synchronize';
    payload.pull_request.head.sha = randomBytes(20).toString('hex');
  });
}

/** Retargets the pull request from main to develop, which queues `run` again. */
async function changeBaseBranch(run: { headSha: string }) {
  await webhooks.pullRequestEvent(run.headSha, (payload) => {
    payload.action = 'edited';
    payload.changes = { base: { ref: { from: 'main' }, sha: { from: setup.git.baseSha } } };
    payload.pull_request.base.ref = 'develop';
  });
}

/** Closes the pull request, which marks all of its runs closed. */
async function closePullRequest(run: { headSha: string }) {
  await webhooks.pullRequestEvent(run.headSha, (payload) => {
    payload.action = 'closed';
    payload.pull_request.state = 'closed';
    payload.pull_request.closed_at = payload.pull_request.updated_at;
  });
}

/** Waits for the log line `event` of notice job `jobId`, and returns it. */
async function logLineOf(event: string, jobId: string) {
  for (let waited = 0; waited < 20_000; waited += 100) {
    const line = setup.context.logs.find((entry) => entry.event === event && entry.jobId === jobId);
    if (line) return line;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`job ${jobId} logged no ${event} within 20 s`);
}

/** Waits for the completion log line of notice job `jobId`, which a cancelled job writes too. */
async function completionOf(jobId: string) {
  return logLineOf('job.fix_press_notice.completed', jobId);
}

/** Delivers the `suspend` event of the installation, which cancels its unfinished work. */
async function suspendInstallation() {
  await webhooks.installationEvent('suspend');
}

/** Clears the installation's suspension, so that later tests can press again. */
async function unsuspendInstallation() {
  await setup.context.database.sql`
    UPDATE installations SET suspended_at = NULL WHERE id = ${setup.installationId}`;
}

/**
 * Presses "Fix with AI" with the owner's allowance free, so that the press queues a preview,
 * and returns the run, its check run and the notice job once GitHub holds the job's `method`
 * request to the check run. `since` counts the fake's requests before the press.
 */
async function pressAndHold(method: 'GET' | 'PATCH') {
  await setup.context.db.update(users).set({ tokensUsed: 0 }).where(eq(users.id, ownerId));
  const { run, checkRun } = await reportedRun(1);
  const held = holdCheckRunRequest(method, checkRun.id);
  const since = setup.fake.requests.length;
  await press(checkRun.id);
  const [job] = await noticeJobs(run.id);
  expect(job!.data.notice.kind).toBe('queued');
  await held.reached;
  return { run, checkRun, job: job!, held, since };
}

describe('fix press notice of a run that changes meanwhile', () => {
  it('skips a cancelled patch request', async () => {
    const { run, checkRun, job, held, since } = await pressAndHold('GET');
    const text = checkRun.output.text;
    const notice = job.data.notice as { patchRequestId: string };
    await setup.context.db
      .update(patchRequests)
      .set({ status: 'cancelled' })
      .where(eq(patchRequests.id, notice.patchRequestId));

    held.release();
    const completed = await completionOf(job.id);

    expect(completed.status).toBe('skipped');
    expect(completed.reason).toBe(`patch request ${notice.patchRequestId} is cancelled`);
    expect(updatesOf(checkRun.id, since)).toEqual([]);
    expect(checkRun.output.text).toBe(text);
    const stale = logsOf(setup.context, 'fix_press_notice.stale', { jobId: job.id });
    expect(stale).toHaveLength(1);
    expect(stale[0]!.runId).toBe(run.id);
  });

  it('skips a cancelled notice job', async () => {
    const { checkRun, job, held, since } = await pressAndHold('GET');
    const text = checkRun.output.text;
    await setup.context.boss.cancel(fixPressNoticeQueue, job.id);

    held.release();
    const completed = await completionOf(job.id);

    expect(completed.status).toBe('skipped');
    expect(completed.reason).toBe(`notice job ${job.id} is cancelled`);
    expect(updatesOf(checkRun.id, since)).toEqual([]);
    expect(checkRun.output.text).toBe(text);
  });

  it('reverts a notice superseded during its update', async () => {
    const { run, checkRun, job, held, since } = await pressAndHold('PATCH');
    const before = { ...checkRun.output };

    await pushNewCommit(run);
    held.release();
    const completed = await completionOf(job.id);

    expect(completed.status).toBe('reverted');
    expect(completed.reason).toMatch(/^the run is superseded: Superseded by run [0-9a-f-]{36} /);
    // The held update and the one that writes the earlier output back.
    const updates = updatesOf(checkRun.id, since);
    expect(updates).toHaveLength(2);
    const noticeText = (updates[0]!.body as { output: { text?: string } }).output.text;
    expect(noticeText).toContain('Preview queued for 1 file.');
    expect((updates[1]!.body as { output: Record<string, unknown> }).output).toEqual(
      before.text === null
        ? { title: before.title, summary: before.summary }
        : { title: before.title, summary: before.summary, text: before.text },
    );
    expect(checkRun.output).toEqual(before);
    expect(checkRun.annotations).toHaveLength(1);
    const reverted = logsOf(setup.context, 'fix_press_notice.reverted', { jobId: job.id });
    expect(reverted).toHaveLength(1);
    expect((await setup.context.boss.getJobById(fixPressNoticeQueue, job.id))?.state).toBe(
      'cancelled',
    );
  });

  it('writes nothing for an installation suspended meanwhile', async () => {
    const { checkRun, job, held, since } = await pressAndHold('GET');
    const before = { ...checkRun.output };
    try {
      await suspendInstallation();
      expect((await setup.context.boss.getJobById(fixPressNoticeQueue, job.id))?.state).toBe(
        'cancelled',
      );

      held.release();
      const stopped = await logLineOf('job.fix_press_notice.stopped', job.id);

      expect(stopped.reason).toBe('suspended');
      expect(stopped.error).toContain(`GitHub App installation ${setup.installationId} on `);
      expect(updatesOf(checkRun.id, since)).toEqual([]);
      expect(checkRun.output).toEqual(before);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(updatesOf(checkRun.id, since)).toEqual([]);
    } finally {
      held.release();
      await unsuspendInstallation();
    }
  });

  it('writes nothing once the installation is marked suspended', async () => {
    // Another job marks the installation when GitHub rejects its token, and cancels nothing.
    const { checkRun, job, held, since } = await pressAndHold('GET');
    const before = { ...checkRun.output };
    try {
      await setup.context.database.sql`
        UPDATE installations SET suspended_at = now() WHERE id = ${setup.installationId}`;

      held.release();
      const stopped = await logLineOf('job.fix_press_notice.stopped', job.id);

      expect(stopped.reason).toBe('suspended');
      expect(updatesOf(checkRun.id, since)).toEqual([]);
      expect(checkRun.output).toEqual(before);
    } finally {
      held.release();
      await unsuspendInstallation();
    }
  });

  it('sends no revert after a suspend during the update', async () => {
    const { checkRun, job, held, since } = await pressAndHold('PATCH');
    try {
      await suspendInstallation();

      held.release();
      const stopped = await logLineOf('job.fix_press_notice.stopped', job.id);

      expect(stopped.reason).toBe('suspended');
      const updates = updatesOf(checkRun.id, since);
      expect(updates).toHaveLength(1);
      expect(checkRun.output.text).toContain('Preview queued for 1 file.');
      const reverted = setup.context.logs.filter(
        (line) => line.event === 'fix_press_notice.reverted' && line.jobId === job.id,
      );
      expect(reverted).toEqual([]);
    } finally {
      held.release();
      await unsuspendInstallation();
    }
  });

  // The close comes last, because it marks every run of the pull request closed.
  const changes = [
    {
      name: 'superseded',
      change: pushNewCommit,
      reason: () => /^the run is superseded: Superseded by run [0-9a-f-]{36} for the newer commit [0-9a-f]{40}\.$/,
    },
    {
      name: 'retargeted',
      change: changeBaseBranch,
      reason: (checkRunId: number) => `check run ${checkRunId} is no longer the run's`,
    },
    { name: 'closed', change: closePullRequest, reason: () => 'the pull request was closed' },
  ];
  for (const { name, change, reason } of changes) {
    it(`writes nothing for a run ${name} meanwhile`, async () => {
      const { run, checkRun, job, held, since } = await pressAndHold('GET');
      const before = { ...checkRun.output };

      await change(run);
      held.release();
      const completed = await completionOf(job.id);

      expect(completed.status).toBe('skipped');
      const expected = reason(checkRun.id);
      if (typeof expected === 'string') expect(completed.reason).toBe(expected);
      else expect(completed.reason).toMatch(expected);
      expect(updatesOf(checkRun.id, since)).toEqual([]);
      expect(checkRun.output).toEqual(before);
      expect((await setup.context.boss.getJobById(fixPressNoticeQueue, job.id))?.state).toBe(
        'cancelled',
      );
      const notice = job.data.notice as { patchRequestId: string };
      const [request] = await setup.context.db
        .select()
        .from(patchRequests)
        .where(eq(patchRequests.id, notice.patchRequestId));
      expect(request!.status).toBe('cancelled');
      // Nothing is written later either, for example by a retry.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(updatesOf(checkRun.id, since)).toEqual([]);
    });
  }
});

describe('fixPressText', () => {
  it('escapes markdown in the login', () => {
    expect(escapeMarkdown('x](https://evil.test)<b>*_`\n#')).toBe(
      'x\\]\\(https\\:\\/\\/evil\\.test\\)\\<b\\>\\*\\_\\` \\#',
    );
  });

  it('asks to wait for a run analyzed again', () => {
    for (const status of ['queued', 'analyzing'] as const) {
      const text = fixPressText({
        notice: { kind: 'run_not_completed', status },
        pressedAt: Date.UTC(2026, 11, 5, 7, 30),
        sender: null,
      });
      expect(text).toContain(
        'Nothing was queued, because this commit is being analyzed again. Its new results ' +
          'will appear in a new Fixwright check run. Press **Fix with AI** there.',
      );
      expect(text).not.toContain('Push a new commit');
    }
  });

  it('counts the files that fit no allowance', () => {
    const text = fixPressText({
      notice: { kind: 'no_file_fits', files: 3 },
      pressedAt: Date.UTC(2026, 11, 5, 7, 30),
      sender: null,
    });
    expect(text).toContain("does not cover the estimate of any of the run's 3 files. That user");
    expect(text).not.toContain('one file');
  });

  it('names the setting of a rejected Gemini key', () => {
    const text = fixPressText({
      notice: { kind: 'platform_key_rejected', provider: 'gemini', status: null },
      pressedAt: Date.UTC(2026, 11, 5, 7, 30),
      sender: null,
    });
    expect(text).toContain(
      'Nothing was queued, because Gemini rejected the Gemini key that the operator of this ' +
        'Fixwright service provides. The user who installed the app can save their own Groq or ' +
        'Gemini key on the keys page of the Fixwright dashboard, or the operator can replace the ' +
        'key in the `GEMINI_API_KEY` environment variable, then press **Fix with AI** again.',
    );
    expect(text).not.toContain('HTTP');
  });

  it('keeps unusable key providers private', () => {
    const text = fixPressText({
      notice: { kind: 'no_provider', unusableOwnKeys: ['groq', 'gemini'] },
      pressedAt: Date.UTC(2026, 11, 5, 7, 30),
      sender: null,
    });
    expect(text).toContain(
      'Nothing was queued. No model provider is available for previews: the keys that the user ' +
        'who installed the app saved are unusable, and previews use no platform key in place of ' +
        'an unusable key of their own. That user can replace or delete them on the keys page of ' +
        'the Fixwright dashboard, which names them. Deleting them lets previews use a platform ' +
        'key, if the operator of this service sets one. Then press **Fix with AI** again.',
    );
    expect(text).not.toMatch(/Groq|Gemini|GROQ_API_KEY|GEMINI_API_KEY/);
  });

  it('counts the findings left out', () => {
    const text = fixPressText({
      notice: {
        kind: 'queued',
        patchRequestId: '00000000-0000-4000-8000-000000000000',
        files: 1,
        leftOutFiles: 0,
        leftOutFindings: 2,
      },
      pressedAt: Date.UTC(2026, 11, 5, 7, 30),
      sender: null,
    });
    expect(text).toContain(
      "2 findings of the run's 1 file were left out, because their estimates do not fit the " +
        'token allowance left of the user who installed the app.',
    );
  });

  it('counts the findings past the limit', () => {
    const text = fixPressText({
      notice: {
        kind: 'queued',
        patchRequestId: '00000000-0000-4000-8000-000000000000',
        files: 31,
        leftOutFiles: 0,
        leftOutFindings: 1700,
        overLimitFindings: 1700,
      },
      pressedAt: Date.UTC(2026, 11, 5, 7, 30),
      sender: null,
    });
    expect(text).toContain(
      'A preview takes at most 1,000 findings, so the first 1,000, the most severe first, were ' +
        'queued and 1,700 more findings were left out. The user who installed the app can ' +
        "preview them by checking them on the run's page on the Fixwright dashboard.",
    );
    expect(text).not.toContain('allowance');
  });

  it('counts the findings past the limit and the allowance apart', () => {
    const text = fixPressText({
      notice: {
        kind: 'queued',
        patchRequestId: '00000000-0000-4000-8000-000000000000',
        files: 31,
        leftOutFiles: 0,
        leftOutFindings: 95,
        overLimitFindings: 8,
      },
      pressedAt: Date.UTC(2026, 11, 5, 7, 30),
      sender: null,
    });
    expect(text).toContain('were queued and 8 more findings were left out.');
    expect(text).toContain(
      "87 findings of the run's 31 files were left out, because their estimates do not fit the " +
        'token allowance left of the user who installed the app.',
    );
  });

  it('names the dashboard without PUBLIC_URL', () => {
    const text = fixPressText({
      notice: {
        kind: 'queued',
        patchRequestId: '00000000-0000-4000-8000-000000000000',
        files: 2,
        leftOutFiles: 3,
      },
      pressedAt: Date.UTC(2026, 11, 5, 7, 30),
      sender: null,
    });
    expect(text).toBe(
      [
        '<!-- fixwright:fix-press pressed-at=1796455800000 -->',
        '### Fix with AI',
        '',
        'Pressed at 2026-12-05 07:30 UTC.',
        '',
        'Preview queued for 2 files. It appears on the Fixwright dashboard of the user who ' +
          'installed the app.',
        '',
        "3 of the run's 5 files were left out, because their estimates do not fit the token " +
          'allowance left of the user who installed the app.',
      ].join('\n'),
    );
  });
});
