// A preview reads the pull request from GitHub once per attempt, before its first model call.
// A head commit that moved without its `synchronize` event, a closed pull request and a 404
// cancel the preview without a charge. A read that fails otherwise lets the preview go on.
import { count, eq, ne } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cancelledRegenerationError } from '../../src/autofix/kept-result.ts';
import { runPreview } from '../../src/autofix/preview.ts';
import { loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import {
  installations,
  patchFiles,
  patchRequests,
  prRuns,
  tokenEvents,
  users,
} from '../../src/db/schema/index.ts';
import type { FakeGroq } from '../../src/demo/fakes/groq.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import { confirmPullRequestQueue } from '../../src/jobs/confirm-pull-request-queue.ts';
import { handlePreviewJob } from '../../src/jobs/preview.ts';
import { logsOf, type TestContext } from '../helpers/context.ts';
import { listKeyedJobs } from '../helpers/jobs.ts';
import {
  answerWithFixedFiles,
  consoleLogFiles,
  consoleLogFixes,
  createPatchRequestForRun,
  createPreviewTestContext,
  insertConsoleLogFindings,
  installationId,
  prNumber,
  repositoryId,
  takeAsLastAttempt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const pullRequest = { owner: 'octo', repo: 'demo', number: prNumber };
const pullRequestPath = `/repos/octo/demo/pulls/${prNumber}`;
const pullRequestPattern = '/repos/:owner/:repo/pulls/:pull_number';
const tokensUsedBefore = 250;

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let runId: string;

beforeAll(async () => {
  setup = await createPreviewTestContext({ head: consoleLogFiles, groqApiKey: 'gsk_platform_head_check_test' });
  ({ context, groq, runId } = setup);
  await insertConsoleLogFindings(context, runId, Object.keys(consoleLogFiles));
});

afterAll(async () => {
  await setup?.close();
});

beforeEach(async () => {
  answerWithFixedFiles(consoleLogFixes, groq, setup.gemini);
  // Each test starts with the pull request open at the run's commit and no newer run.
  setup.github.updatePullRequest(pullRequest, {
    headSha: setup.repository.headSha,
    state: 'open',
    closedAt: null,
    mergedAt: null,
    updatedAt: '2024-06-01T09:00:00Z',
  });
  await context.db.delete(prRuns).where(ne(prRuns.id, runId));
  await context.db.update(prRuns).set({ status: 'completed', error: null }).where(eq(prRuns.id, runId));
  await context.database.sql`DELETE FROM pgboss.job WHERE name = ${confirmPullRequestQueue}`;
});

async function newPatchRequest() {
  const [user] = await context.db
    .insert(users)
    .values({
      login: `head-${Math.random().toString(36).slice(2, 9)}`,
      plan: 'pro',
      tokenLimit: 100_000,
      tokensUsed: tokensUsedBefore,
    })
    .returning();
  const patchRequestId = await createPatchRequestForRun(context, runId, user!.id);
  return { userId: user!.id, patchRequestId };
}

/** Commits on the head branch and moves GitHub's pull request there, without a webhook. */
async function pushWithoutWebhook(): Promise<string> {
  const note = `notes/${Date.now()}-${Math.random()}.txt`;
  const moved = await commitOnBranch(setup.repository.dir, headBranch, { [note]: 'x\n' });
  setup.github.updatePullRequest(pullRequest, { headSha: moved, updatedAt: '2024-06-01T09:10:00Z' });
  return moved;
}

function completions() {
  return groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
}

function pullRequestReads(): number {
  return setup.github.requests.filter(
    (request) => request.method === 'GET' && request.path === pullRequestPath,
  ).length;
}

async function requestRow(patchRequestId: string) {
  const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
  return request!;
}

async function userRow(userId: string) {
  const [user] = await context.db.select().from(users).where(eq(users.id, userId));
  return user!;
}

async function ledgerRows(patchRequestId: string): Promise<number> {
  const [row] = await context.db
    .select({ value: count() })
    .from(tokenEvents)
    .where(eq(tokenEvents.patchRequestId, patchRequestId));
  return row!.value;
}

async function runOf(headSha: string) {
  const [run] = await context.db.select().from(prRuns).where(eq(prRuns.headSha, headSha));
  return run;
}

async function pullRequestChecks() {
  return listKeyedJobs(context, confirmPullRequestQueue, `${repositoryId}#${prNumber}`);
}

/** Checks that `patchRequestId` was cancelled with `reason` before any model call or charge. */
async function expectCancelledWithoutCharge(patchRequestId: string, userId: string, reason: string) {
  const request = await requestRow(patchRequestId);
  expect(request.status).toBe('cancelled');
  expect(request.error).toBe(reason);
  expect(request.completedAt).toBeInstanceOf(Date);
  expect(request.totalTokens).toBe(0);
  expect(completions()).toHaveLength(0);
  expect(await ledgerRows(patchRequestId)).toBe(0);
  const user = await userRow(userId);
  expect(user.tokensUsed).toBe(tokensUsedBefore);
  expect(user.tokensReserved).toBe(0);
}

describe('preview head check', () => {
  it('cancels a preview of a moved head', async () => {
    const moved = await pushWithoutWebhook();
    const { userId, patchRequestId } = await newPatchRequest();
    const readsBefore = pullRequestReads();

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome).toEqual({ status: 'cancelled', files: 0, tokens: 0 });
    expect(pullRequestReads() - readsBefore).toBe(1);
    await expectCancelledWithoutCharge(
      patchRequestId,
      userId,
      `Cancelled: the pull request's head moved to commit ${moved.slice(0, 7)}; request the fix ` +
        'on the newest run.',
    );
    // The moved head is recorded as for a `synchronize` event, from the same response.
    const newer = (await runOf(moved))!;
    expect(newer.status).toBe('queued');
    expect(newer.prUpdatedAt?.toISOString()).toBe('2024-06-01T09:10:00.000Z');
    expect((await context.boss.getJobById(analyzeQueue, newer.analyzeJobId!))?.state).toBe('created');
    const older = (await runOf(setup.repository.headSha))!;
    expect(older.status).toBe('superseded');
    expect(older.error).toBe(`Superseded by run ${newer.id} for the newer commit ${moved}.`);
    expect(logsOf(context, 'preview.head_moved').at(-1)).toMatchObject({
      runHeadSha: setup.repository.headSha,
      githubHeadSha: moved,
    });
    expect(logsOf(context, 'preview.newer_head_recorded').at(-1)?.outcome).toBe(
      `run ${newer.id} queued; superseded 1 older run(s)`,
    );
    expect(await pullRequestChecks()).toEqual([]);
  });

  it('previews at the same head after one read', async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    const readsBefore = pullRequestReads();

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    // One read for the attempt, not one per file.
    expect(outcome.files).toBe(2);
    expect(pullRequestReads() - readsBefore).toBe(1);
    expect(completions()).toHaveLength(2);
    expect(await ledgerRows(patchRequestId)).toBe(2);
    const user = await userRow(userId);
    expect(user.tokensUsed).toBeGreaterThan(tokensUsedBefore);
    expect(user.tokensReserved).toBe(0);
    expect((await runOf(setup.repository.headSha))!.status).toBe('completed');
  });

  it('previews after a server error', async () => {
    setup.github.queueResponse({ method: 'GET', path: pullRequestPattern, status: 500 });
    const { patchRequestId } = await newPatchRequest();
    const readsBefore = pullRequestReads();
    const warningsBefore = logsOf(context, 'preview.head_check_failed').length;

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    // Octokit does not send the read again, and the job does not retry it.
    expect(pullRequestReads() - readsBefore).toBe(1);
    expect(completions()).toHaveLength(2);
    const warnings = logsOf(context, 'preview.head_check_failed').slice(warningsBefore);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.level).toBe(40);
    expect(warnings[0]!.rateLimitedUntil).toBeUndefined();
    expect(warnings[0]!.err).toMatchObject({ status: 500, request: `GET ${pullRequestPath}` });
    expect((await runOf(setup.repository.headSha))!.status).toBe('completed');
  });

  it('previews after a rate limit on the last attempt', async () => {
    // A limit that lifts in an hour, which Octokit does not wait out.
    const reset = Math.floor(Date.now() / 1000) + 3600;
    setup.github.queueResponse({
      method: 'GET',
      path: pullRequestPattern,
      status: 403,
      headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) },
      body: { message: 'API rate limit exceeded for installation ID 78.' },
    });
    const { patchRequestId } = await newPatchRequest();
    const warningsBefore = logsOf(context, 'preview.head_check_failed').length;
    const job = await takeAsLastAttempt(context, patchRequestId);

    await handlePreviewJob(context, job);

    // The attempt went on, so even the last one previews both files.
    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('ready');
    expect(completions()).toHaveLength(2);
    const warnings = logsOf(context, 'preview.head_check_failed').slice(warningsBefore);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.rateLimitedUntil).toBe(new Date((reset + 1) * 1000).toISOString());
    expect(logsOf(context, 'job.preview.failed', { jobId: job.id })).toEqual([]);
  });

  it('cancels a preview of a closed pull request', async () => {
    setup.github.updatePullRequest(pullRequest, {
      state: 'closed',
      closedAt: '2024-06-01T09:20:00Z',
      updatedAt: '2024-06-01T09:20:00Z',
    });
    const { userId, patchRequestId } = await newPatchRequest();

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('cancelled');
    await expectCancelledWithoutCharge(
      patchRequestId,
      userId,
      'Cancelled because pull request octo/demo#1 was closed. Reopen it on GitHub, then request ' +
        'the fix again.',
    );
    // A check of the pull request applies the close, with its retries and ordering rules.
    const checks = await pullRequestChecks();
    expect(checks.map((job) => job.state)).toEqual(['created']);
    expect(logsOf(context, 'preview.newer_head_check_queued').at(-1)?.checkJobId).toBe(checks[0]!.id);
  });

  it('cancels a preview of a merged pull request', async () => {
    setup.github.updatePullRequest(pullRequest, {
      state: 'closed',
      closedAt: '2024-06-01T09:30:00Z',
      mergedAt: '2024-06-01T09:30:00Z',
      updatedAt: '2024-06-01T09:30:00Z',
    });
    const { userId, patchRequestId } = await newPatchRequest();

    await runPreview(context, patchRequestId, 0, context.logger);

    await expectCancelledWithoutCharge(
      patchRequestId,
      userId,
      'Cancelled because pull request octo/demo#1 was merged, so fixes can no longer be ' +
        'applied to it. Request fixes on a new pull request.',
    );
  });

  it('cancels a preview on a 404', async () => {
    setup.github.queueResponse({ method: 'GET', path: pullRequestPattern, status: 404 });
    const { userId, patchRequestId } = await newPatchRequest();

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('cancelled');
    await expectCancelledWithoutCharge(
      patchRequestId,
      userId,
      'Cancelled: GitHub returned 404 for pull request octo/demo#1. The pull request or its ' +
        'repository was deleted, or the app can no longer read the repository, so a fix could ' +
        'not be applied.',
    );
    // Nothing to record: the run stays as it is, and no check reads the missing pull request.
    expect((await runOf(setup.repository.headSha))!.status).toBe('completed');
    expect(await pullRequestChecks()).toEqual([]);
  });

  it('restores the kept result of a regeneration', async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    await context.db.update(installations).set({ userId }).where(eq(installations.id, installationId));
    expect((await runPreview(context, patchRequestId, 0, context.logger)).status).toBe('ready');
    const [fileA, fileB] = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId))
      .orderBy(patchFiles.path);
    const regenerated = await regeneratePatchFile(context.db, context.boss, {
      userId,
      patchRequestId,
      fileId: fileA!.id,
      payment: await loadPreviewPayment(context, userId),
    });
    expect(regenerated).toMatchObject({ ok: true, generation: 1 });
    const ledgerBefore = await ledgerRows(patchRequestId);
    const usedBefore = (await userRow(userId)).tokensUsed;
    const moved = await pushWithoutWebhook();
    groq.reset();

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('cancelled');
    expect(completions()).toHaveLength(0);
    const request = await requestRow(patchRequestId);
    expect(request.status).toBe('cancelled');
    expect(request.error).toBe(
      `Cancelled: the pull request's head moved to commit ${moved.slice(0, 7)}; request the fix ` +
        'on the newest run.',
    );
    const [restoredA, keptB] = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId))
      .orderBy(patchFiles.path);
    expect(restoredA!.status).toBe('ready');
    expect(restoredA!.proposedText).toBe(consoleLogFixes['src/a.ts']);
    expect(restoredA!.diff).toBe(fileA!.diff);
    expect(restoredA!.regenerationError).toBe(cancelledRegenerationError);
    expect(restoredA!.keptResult).toBeNull();
    expect(keptB).toEqual(fileB);
    expect(await ledgerRows(patchRequestId)).toBe(ledgerBefore);
    const user = await userRow(userId);
    expect(user.tokensUsed).toBe(usedBefore);
    expect(user.tokensReserved).toBe(0);
    expect((await runOf(moved))!.status).toBe('queued');
    expect((await runOf(setup.repository.headSha))!.status).toBe('superseded');
  });
});
