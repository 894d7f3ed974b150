import { randomUUID } from 'node:crypto';
import type PgBoss from 'pg-boss';
import { eq } from 'drizzle-orm';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { installations, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import {
  handleFixPressNoticeJob,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { handlePreviewJob, type PreviewJobData } from '../../src/jobs/preview.ts';
import { handleReportJob, type ReportJobData } from '../../src/jobs/report.ts';
import { primaryRateLimitError, secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import {
  createGitHubTestContext,
  insertFindings,
  insertInstallation,
  insertRun,
  insertUser,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { takeAsLastAttempt } from '../helpers/preview-context.ts';
import { logsOf } from '../helpers/context.ts';

let setup: GitHubTestContext;
/** Platform model of the previews; GitHub rejects them before any model call. */
let groq: FakeGroq;

const checkRunsPattern = '/repos/:owner/:repo/check-runs';
const tokenPath = /^\/app\/installations\/\d+\/access_tokens$/;

/** Builds a job as pg-boss hands it to a worker on its first attempt. */
function job<T extends object>(data: T): PgBoss.JobWithMetadata<T> {
  const fields = { id: randomUUID(), data, retryCount: 0, retryLimit: 4 };
  return fields as PgBoss.JobWithMetadata<T>;
}

function requestsTo(method: string, path: RegExp) {
  return setup.fake.requests.filter(
    (request) => request.method === method && path.test(request.path),
  );
}

async function queuedRun(headSha = setup.git.headSha) {
  return insertRun(setup.context, {
    installationId: setup.installationId,
    headSha,
    baseSha: setup.git.baseSha,
    status: 'queued',
  });
}

async function runById(id: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, id));
  return run!;
}

/** Creates a patch request for a warning on a completed run and returns it, with its job queued. */
async function queuedPreview() {
  const user = await insertUser(setup.context);
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
  });
  const selected = await insertFindings(setup.context, run.id, [
    { path: 'src/app.ts', line: 2, severity: 'warning' },
  ]);
  const request = await createPatchRequest(setup.context.db, setup.context.boss, {
    runId: run.id,
    userId: user.id,
    findingIds: selected.map((finding) => finding.id),
  });
  if (!request.ok) throw new Error('patch request not created');
  return request;
}

async function patchRequestById(id: string) {
  const [request] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  return request!;
}

async function installationRow() {
  const [row] = await setup.context.db
    .select()
    .from(installations)
    .where(eq(installations.id, setup.installationId));
  return row!;
}

/** Builds the message of a token error of installation `id` on `owner`, after the job's prefix. */
function suspendedMessage(id: number) {
  return (
    `GitHub App installation ${id} on ${owner} is suspended. An owner of ${owner} must ` +
    'unsuspend it in the GitHub App settings on GitHub before Fixwright can work there again.'
  );
}

function uninstalledMessage(id: number) {
  return (
    `GitHub App installation ${id} on ${owner} no longer exists because the app was ` +
    `uninstalled. Install the app on ${owner} again on GitHub before Fixwright can work there again.`
  );
}

beforeAll(async () => {
  groq = await startFakeGroq();
});

afterAll(async () => {
  await groq?.close();
});

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': "export const a = 1;\nconsole.log('a', a);\n" },
    env: { GROQ_API_KEY: 'gsk_installation_work_test', GROQ_BASE_URL: groq.url },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterEach(async () => {
  await setup?.close();
});

describe('installation tokens', () => {
  it('mints one token for two jobs', async () => {
    const first = await queuedRun();
    // One after the other, so the second job finds the token in auth-app's cache.
    await handleAnalyzeJob(setup.context, job<AnalyzeJobData>({ runId: first.id }));
    // A push moves the pull request's head, as GitHub does, before the second commit's job.
    const secondSha = await commitOnBranch(setup.git.dir, headBranch, { 'b.txt': 'b\n' });
    setup.fake.addPullRequest({
      owner,
      repo,
      number: prNumber,
      baseSha: setup.git.baseSha,
      headSha: secondSha,
      headRef: headBranch,
      title: 'Change widgets',
    });
    const second = await queuedRun(secondSha);
    await handleAnalyzeJob(setup.context, job<AnalyzeJobData>({ runId: second.id }));

    expect((await runById(first.id)).status).toBe('completed');
    expect((await runById(second.id)).status).toBe('completed');
    expect(setup.fake.issuedTokens).toHaveLength(1);
    expect(requestsTo('POST', tokenPath)).toHaveLength(1);
    const listed = requestsTo('GET', /\/pulls\/\d+\/files$/);
    expect(listed).toHaveLength(2);
    const token = setup.fake.issuedTokens[0]!.token;
    for (const request of listed) {
      expect(request.headers.authorization).toBe(`token ${token}`);
    }
  });
});

describe('rate limits', () => {
  async function reportedRun() {
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
    });
    await insertFindings(setup.context, run.id, [
      { path: 'src/app.ts', line: 2, severity: 'warning' },
    ]);
    return run;
  }

  it('waits the retry-after of a secondary limit', async () => {
    const run = await reportedRun();
    setup.fake.queueResponse(secondaryRateLimitError('POST', checkRunsPattern, 2));
    await handleReportJob(setup.context, job<ReportJobData>({ runId: run.id }));

    const posts = requestsTo('POST', /\/check-runs$/);
    expect(posts).toHaveLength(2);
    expect(posts[1]!.receivedAt - posts[0]!.receivedAt).toBeGreaterThanOrEqual(1950);
    expect(setup.fake.checkRuns).toHaveLength(1);
    const warning = setup.context.logs.find((line) => line.rateLimit === 'secondary');
    expect(warning?.retryAfterSeconds).toBe(2);
    expect((await runById(run.id)).reportError).toBeNull();
  });

  it('waits for the reset of a primary limit', async () => {
    const run = await reportedRun();
    const resetEpochSeconds = Math.floor(Date.now() / 1000) + 2;
    setup.fake.queueResponse(primaryRateLimitError('POST', checkRunsPattern, resetEpochSeconds));
    await handleReportJob(setup.context, job<ReportJobData>({ runId: run.id }));

    const posts = requestsTo('POST', /\/check-runs$/);
    expect(posts).toHaveLength(2);
    expect(posts[1]!.receivedAt).toBeGreaterThanOrEqual(resetEpochSeconds * 1000);
    expect(setup.fake.checkRuns).toHaveLength(1);
    const warning = setup.context.logs.find((line) => line.rateLimit === 'primary');
    expect(warning?.retryAfterSeconds).toBeGreaterThanOrEqual(2);
  });
});

describe('unavailable installations', () => {
  it('fails the run of a suspended installation', async () => {
    setup.fake.setInstallation({
      id: setup.installationId,
      account: { login: 'octo-org' },
      suspended: true,
    });
    const run = await queuedRun();

    await expect(
      handleAnalyzeJob(setup.context, job<AnalyzeJobData>({ runId: run.id })),
    ).resolves.toBeUndefined();

    const stored = await runById(run.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(`Analysis failed: ${suspendedMessage(setup.installationId)}`);
    expect((await installationRow()).suspendedAt).not.toBeNull();
    expect(requestsTo('POST', tokenPath)).toHaveLength(1);
    const stopped = setup.context.logs.find((line) => line.event === 'job.analyze.stopped');
    expect(stopped?.reason).toBe('suspended');
  });

  it('fails the run of an uninstalled app', async () => {
    setup.fake.removeInstallation(setup.installationId);
    const run = await queuedRun();

    await expect(
      handleAnalyzeJob(setup.context, job<AnalyzeJobData>({ runId: run.id })),
    ).resolves.toBeUndefined();

    const stored = await runById(run.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(`Analysis failed: ${uninstalledMessage(setup.installationId)}`);
    expect((await installationRow()).deletedAt).not.toBeNull();
  });

  it('stops a preview without calling GitHub', async () => {
    const request = await queuedPreview();
    // recordInstallationUnavailable marks the row so after GitHub rejects a token, and that
    // cancels no queued work.
    await setup.context.db
      .update(installations)
      .set({ suspendedAt: new Date() })
      .where(eq(installations.id, setup.installationId));
    const requestsBefore = setup.fake.requests.length;
    const { previewJobId } = await patchRequestById(request.id);

    await expect(
      handlePreviewJob(setup.context, {
        ...job<PreviewJobData>({ patchRequestId: request.id }),
        id: previewJobId!,
      }),
    ).resolves.toBeUndefined();

    const stored = await patchRequestById(request.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(`Preview failed: ${suspendedMessage(setup.installationId)}`);
    expect(setup.fake.requests).toHaveLength(requestsBefore);
  });

  it('leaves a preview of another job', async () => {
    const request = await queuedPreview();
    await setup.context.db
      .update(installations)
      .set({ suspendedAt: new Date() })
      .where(eq(installations.id, setup.installationId));
    const { previewJobId } = await patchRequestById(request.id);
    const otherJob = job<PreviewJobData>({ patchRequestId: request.id });

    await expect(handlePreviewJob(setup.context, otherJob)).resolves.toBeUndefined();

    const stored = await patchRequestById(request.id);
    expect(stored.status).toBe('queued');
    expect(stored.error).toBeNull();
    // The job stops before it reads the installation, so nothing ends the preview.
    expect(logsOf(setup.context, 'preview.stale_job', { jobId: otherJob.id })).toEqual([
      expect.objectContaining({ currentJobId: previewJobId }),
    ]);
    expect(logsOf(setup.context, 'job.preview.failure_skipped')).toEqual([]);
  });

  it.each([
    ['suspended', suspendedMessage],
    ['uninstalled', uninstalledMessage],
  ] as const)('fails a preview of an installation %s', async (state, message) => {
    // Before this file's GitHub read, which gets the token error, the database shows the
    // installation active.
    if (state === 'suspended') {
      setup.fake.setInstallation({ id: setup.installationId, account: { login: owner }, suspended: true });
    } else {
      setup.fake.removeInstallation(setup.installationId);
    }
    const request = await queuedPreview();
    // The queued job, active in pg-boss, because each file checks that its attempt still runs.
    const lastAttempt = await takeAsLastAttempt(setup.context, request.id);

    await expect(handlePreviewJob(setup.context, lastAttempt)).resolves.toBeUndefined();

    const stored = await patchRequestById(request.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(`Preview failed: ${message(setup.installationId)}`);
    expect(requestsTo('POST', tokenPath)).toHaveLength(1);
    expect(groq.requests).toHaveLength(0);
    const row = await installationRow();
    expect(state === 'suspended' ? row.suspendedAt : row.deletedAt).not.toBeNull();
  });

  it('logs the account of a stopped notice', async () => {
    setup.fake.removeInstallation(setup.installationId);
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
    });
    const checkRunId = 4242;
    await setup.context.db.update(prRuns).set({ checkRunId }).where(eq(prRuns.id, run.id));
    const data: FixPressNoticeJobData = {
      runId: run.id,
      checkRunId,
      pressedAt: Date.now(),
      sender: 'a-reviewer',
      notice: { kind: 'no_findings' },
    };

    await expect(handleFixPressNoticeJob(setup.context, job(data))).resolves.toBeUndefined();

    const stopped = setup.context.logs.find(
      (line) => line.event === 'job.fix_press_notice.stopped',
    );
    expect(stopped?.reason).toBe('uninstalled');
    expect(stopped?.error).toBe(uninstalledMessage(setup.installationId));
    expect((await installationRow()).deletedAt).not.toBeNull();
  });

  it('records why the report stopped', async () => {
    setup.fake.removeInstallation(setup.installationId);
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
    });

    await expect(
      handleReportJob(setup.context, job<ReportJobData>({ runId: run.id })),
    ).resolves.toBeUndefined();

    const stored = await runById(run.id);
    expect(stored.status).toBe('completed');
    expect(stored.reportError).toBe(
      `Posting the results to GitHub failed: ${uninstalledMessage(setup.installationId)}`,
    );
    expect(setup.fake.checkRuns).toHaveLength(0);
  });
});
