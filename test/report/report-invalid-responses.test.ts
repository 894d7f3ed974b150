// Reporting when GitHub returns a 2xx response that lacks or mistypes a field that the report
// reads. Such a response fails the report job, which pg-boss retries, and the last attempt stores
// an error that names the request and the field. A create whose response is invalid may have
// taken effect, so the report lists the check runs or comments before it creates one again, and
// the pull request never gets a second check run or summary comment. A response over the size
// limit fails the report job, and the job of a "Fix with AI" notice, at once.
import { and, eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { prRuns, summaryComments } from '../../src/db/schema/index.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import { issueCommentRoutes } from '../../src/demo/fakes/github/issue-comments.ts';
import type { FakeResponse, Route } from '../../src/demo/fakes/github/router.ts';
import type { FakeState } from '../../src/demo/fakes/github/state.ts';
import { UnexpectedGitHubAnswerError } from '../../src/github/github-response.ts';
import {
  fixPressNoticeQueue,
  handleFixPressNoticeJob,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { handleReportJob, reportQueue, type ReportJobData } from '../../src/jobs/report.ts';
import { publishFixPressNotice } from '../../src/report/publish-fix-press-notice.ts';
import { reportRun } from '../../src/report/report-run.ts';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertWarnedRun,
  owner,
  prNumber,
  repo,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { failAfterWork } from '../helpers/lost-response.ts';

let setup: GitHubTestContext;

const checkRunsPath = `/repos/${owner}/${repo}/check-runs`;
const commentsPath = `/repos/${owner}/${repo}/issues/${prNumber}/comments`;
const htmlPage = {
  headers: { 'content-type': 'text/html' },
  body: '<html><body>Service Unavailable</body></html>',
};
const checkRunPattern = '/repos/:owner/:repo/check-runs/:check_run_id';
/** The app's limit on one GitHub response in these tests, far above the fake's responses. */
const maxResponseBytes = 1024 * 1024;

type WriteRoute = 'createCheckRun' | 'updateCheckRun' | 'createComment';

const writeRoutes: Record<WriteRoute, Route<FakeState>> = {
  createCheckRun: routeOf(checkRoutes, 'POST', '/repos/:owner/:repo/check-runs'),
  updateCheckRun: routeOf(checkRoutes, 'PATCH', checkRunPattern),
  createComment: routeOf(
    issueCommentRoutes,
    'POST',
    '/repos/:owner/:repo/issues/:issue_number/comments',
  ),
};

function routeOf(routes: Route<FakeState>[], method: string, pattern: string): Route<FakeState> {
  return routes.find((route) => route.method === method && route.pattern === pattern)!;
}

/**
 * Makes the fake carry out the next request of `route` and return `response` in place of its
 * own, as when a proxy replaces GitHub's response. The fake prefers the route added last.
 */
function answerAfterWork(route: WriteRoute, response: FakeResponse) {
  setup.fake.addRoute(failAfterWork(writeRoutes[route], { next: 1 }, 'next', response));
}

function requestCount(method: string, path: string | RegExp): number {
  return setup.fake.requests.filter(
    (request) =>
      request.method === method &&
      (typeof path === 'string' ? request.path === path : path.test(request.path)),
  ).length;
}

function checkRunsOf(runId: string) {
  return setup.fake.checkRuns.filter((checkRun) => checkRun.externalId === runId);
}

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

async function storedCommentId(): Promise<number | null | undefined> {
  const [row] = await setup.context.db
    .select({ commentId: summaryComments.commentId })
    .from(summaryComments)
    .where(
      and(eq(summaryComments.repositoryId, repositoryId), eq(summaryComments.prNumber, prNumber)),
    );
  return row?.commentId;
}

/** Inserts a completed run with `findingLines` warnings and queues its report job. */
async function queuedReport(findingLines: number, retryLimit: number) {
  const run = await insertWarnedRun(setup, findingLines);
  const data: ReportJobData = { runId: run.id };
  const jobId = (await setup.context.boss.send(reportQueue, data, { retryLimit }))!;
  await setup.context.db.update(prRuns).set({ reportJobId: jobId }).where(eq(prRuns.id, run.id));
  return { run, jobId };
}

/** Runs report job `jobId` as a worker does, and returns what it threw, or null. */
async function attempt(jobId: string): Promise<unknown> {
  return runDueJob<ReportJobData>(setup.context, reportQueue, jobId, (job) =>
    handleReportJob(setup.context, job),
  ).then(
    () => null,
    (error: unknown) => error,
  );
}

async function jobState(jobId: string) {
  return (await setup.context.boss.getJobById(reportQueue, jobId))?.state;
}

function reportError(request: string, problem: string, status = 200): string {
  return (
    `Posting the results to GitHub failed: GitHub returned an invalid response (status ` +
    `${status}) to ${request}: ${problem}. GitHub, or a proxy between this server and ` +
    'GITHUB_API_URL, may be failing. Once it responds normally, push a commit to analyze and ' +
    'report the pull request again.'
  );
}

function expectInvalidResponse(error: unknown, request: string, problem: string) {
  expect(error).toBeInstanceOf(UnexpectedGitHubAnswerError);
  const invalid = error as UnexpectedGitHubAnswerError;
  expect(`${invalid.method} ${invalid.path}`).toBe(request);
  expect(invalid.problem).toBe(problem);
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
    maxResponseBytes,
  });
  await insertInstallation(setup.context, { id: setup.installationId });
});

beforeEach(async () => {
  for (const comment of setup.fake.issueComments) setup.fake.removeIssueComment(comment.id);
  await setup.context.database.sql`DELETE FROM summary_comments`;
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

const invalidCreateAnswers: [string, FakeResponse, string][] = [
  ['without an id', { status: 201, body: {} }, 'id: Invalid input: expected number, received undefined'],
  ['with an id as a string', { status: 201, body: { id: '17' } }, 'id: Invalid input: expected number, received string'],
  ["as a proxy's HTML page", { status: 200, ...htmlPage }, 'body: Invalid input: expected object, received string'],
];

describe('report, invalid check run response', () => {
  it.each(invalidCreateAnswers)('adopts a check run answered %s', async (_case, answer) => {
    const run = await insertWarnedRun(setup, 3);
    answerAfterWork('createCheckRun', answer);
    const createsBefore = requestCount('POST', checkRunsPath);
    const adoptedBefore = logsOf(setup.context, 'report.check_run_adopted').length;

    const outcome = await reportRun(setup.context, run.id, setup.context.logger);

    expect(requestCount('POST', checkRunsPath) - createsBefore).toBe(1);
    const created = checkRunsOf(run.id);
    expect(created).toHaveLength(1);
    expect(created[0]!.annotations).toHaveLength(3);
    expect(outcome).toMatchObject({ status: 'reported', checkRunId: created[0]!.id, annotations: 3 });
    const stored = await storedRun(run.id);
    expect(stored.checkRunId).toBe(created[0]!.id);
    expect(stored.checkRunAnnotations).toBe(3);
    expect(stored.reportedAt).toBeInstanceOf(Date);
    const adopted = logsOf(setup.context, 'report.check_run_adopted').slice(adoptedBefore);
    expect(adopted).toHaveLength(1);
    expect(adopted[0]!.checkRunId).toBe(created[0]!.id);
  }, 60_000);

  it('creates a check run again that GitHub did not create', async () => {
    const { run, jobId } = await queuedReport(3, 1);
    // The fake's handler does not run, as when a proxy responds in GitHub's place.
    setup.fake.queueResponse({ method: 'POST', path: checkRunsPath, status: 201, body: {} });
    const createsBefore = requestCount('POST', checkRunsPath);
    const failedBefore = logsOf(setup.context, 'job.report.failed').length;
    const problem = 'id: Invalid input: expected number, received undefined';

    const error = await attempt(jobId);

    expectInvalidResponse(error, `POST ${checkRunsPath}`, problem);
    expect(await jobState(jobId)).toBe('retry');
    const waiting = await storedRun(run.id);
    expect(waiting.checkRunId).toBeNull();
    expect(waiting.reportError).toBeNull();
    expect(waiting.reportedAt).toBeNull();
    const failed = logsOf(setup.context, 'job.report.failed').slice(failedBefore);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.finalAttempt).toBe(false);
    expect(failed[0]!.err).toMatchObject({ type: 'UnexpectedGitHubAnswerError', message: problem });
    expect((failed[0]!.err as { request?: unknown }).request).toBe(`POST ${checkRunsPath}`);

    expect(await attempt(jobId)).toBeNull();

    expect(await jobState(jobId)).toBe('completed');
    expect(requestCount('POST', checkRunsPath) - createsBefore).toBe(2);
    const created = checkRunsOf(run.id);
    expect(created).toHaveLength(1);
    const reported = await storedRun(run.id);
    expect(reported.checkRunId).toBe(created[0]!.id);
    expect(reported.reportedAt).toBeInstanceOf(Date);
  }, 60_000);

  it('stores the error of the last attempt', async () => {
    const { run, jobId } = await queuedReport(1, 0);
    setup.fake.queueResponse({ method: 'POST', path: checkRunsPath, status: 201, ...htmlPage });
    const failedBefore = logsOf(setup.context, 'job.report.failed').length;
    const problem = 'body: Invalid input: expected object, received string';

    const error = await attempt(jobId);

    expectInvalidResponse(error, `POST ${checkRunsPath}`, problem);
    expect(await jobState(jobId)).toBe('failed');
    const stored = await storedRun(run.id);
    expect(stored.reportError).toBe(reportError(`POST ${checkRunsPath}`, problem, 201));
    expect(stored.checkRunId).toBeNull();
    expect(stored.reportedAt).toBeNull();
    expect(stored.status).toBe('completed');
    expect(checkRunsOf(run.id)).toEqual([]);
    const failed = logsOf(setup.context, 'job.report.failed').slice(failedBefore);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.finalAttempt).toBe(true);
  }, 60_000);

  it('lists again after an invalid listing', async () => {
    const { run, jobId } = await queuedReport(2, 1);
    const listPath = `/repos/${owner}/${repo}/commits/${run.headSha}/check-runs`;
    const create = writeRoutes.createCheckRun;
    // GitHub creates the check run, and the response and the listing after it are proxy pages.
    setup.fake.addRoute({
      ...create,
      async handle(context) {
        await create.handle(context);
        setup.fake.addRoute(create);
        setup.fake.queueResponse({ method: 'GET', path: listPath, status: 200, ...htmlPage });
        return { status: 200, ...htmlPage };
      },
    });
    const createsBefore = requestCount('POST', checkRunsPath);
    const listsBefore = requestCount('GET', listPath);

    const error = await attempt(jobId);

    const problem = 'body: Invalid input: expected object, received string';
    expectInvalidResponse(error, `GET ${listPath}`, problem);
    expect((await storedRun(run.id)).checkRunId).toBeNull();
    // The listing before the create and the one after it.
    expect(requestCount('GET', listPath) - listsBefore).toBe(2);

    expect(await attempt(jobId)).toBeNull();

    expect(requestCount('POST', checkRunsPath) - createsBefore).toBe(1);
    const created = checkRunsOf(run.id);
    expect(created).toHaveLength(1);
    expect(created[0]!.annotations).toHaveLength(2);
    expect((await storedRun(run.id)).checkRunId).toBe(created[0]!.id);
  }, 60_000);

  it('rejects a mistyped check run in a listing', async () => {
    const run = await insertWarnedRun(setup, 1);
    const listPath = `/repos/${owner}/${repo}/commits/${run.headSha}/check-runs`;
    const body = { total_count: 1, check_runs: [{ id: 5, external_id: run.id, app: null, output: {} }] };
    setup.fake.queueResponse({ method: 'GET', path: listPath, status: 200, body });

    const error = await reportRun(setup.context, run.id, setup.context.logger).catch(
      (caught: unknown) => caught,
    );

    const problem =
      'check_runs.0.output.annotations_count: Invalid input: expected number, received ' +
      'undefined; check_runs.0.output.text: Invalid input: expected string, received undefined';
    expectInvalidResponse(error, `GET ${listPath}`, problem);
    expect(checkRunsOf(run.id)).toEqual([]);
    expect((await storedRun(run.id)).checkRunId).toBeNull();
  }, 60_000);

  it('sends annotations once after invalid updates', async () => {
    const run = await insertWarnedRun(setup, 120);
    answerAfterWork('updateCheckRun', { status: 200, ...htmlPage });

    const outcome = await reportRun(setup.context, run.id, setup.context.logger);

    expect(outcome).toMatchObject({ status: 'reported', annotations: 120 });
    const created = checkRunsOf(run.id);
    expect(created).toHaveLength(1);
    const lines = created[0]!.annotations.map((annotation) => annotation.start_line);
    expect(lines).toEqual(Array.from({ length: 120 }, (_, index) => index + 1));
    expect((await storedRun(run.id)).checkRunAnnotations).toBe(120);
  }, 60_000);

  it('sends a batch again that GitHub did not store', async () => {
    const { run, jobId } = await queuedReport(120, 1);
    setup.fake.queueResponse({ method: 'PATCH', path: checkRunPattern, status: 200, body: {} });

    const error = await attempt(jobId);

    const created = checkRunsOf(run.id);
    expect(created).toHaveLength(1);
    const patchPath = `${checkRunsPath}/${created[0]!.id}`;
    expectInvalidResponse(
      error,
      `PATCH ${patchPath}`,
      'id: Invalid input: expected number, received undefined',
    );
    const waiting = await storedRun(run.id);
    expect(waiting.checkRunId).toBe(created[0]!.id);
    expect(waiting.checkRunAnnotations).toBe(50);
    expect(waiting.reportedAt).toBeNull();

    expect(await attempt(jobId)).toBeNull();

    const lines = created[0]!.annotations.map((annotation) => annotation.start_line);
    expect(lines).toEqual(Array.from({ length: 120 }, (_, index) => index + 1));
    expect(requestCount('PATCH', patchPath)).toBe(3);
    const reported = await storedRun(run.id);
    expect(reported.checkRunAnnotations).toBe(120);
    expect(reported.reportedAt).toBeInstanceOf(Date);
  }, 60_000);

  it('keeps its count over an invalid stored output', async () => {
    const run = await insertWarnedRun(setup, 120);
    await reportRun(setup.context, run.id, setup.context.logger);
    const created = checkRunsOf(run.id)[0]!;
    // As if an attempt had died after the first update, before it stored the count.
    created.annotations.splice(100);
    await setup.context.db
      .update(prRuns)
      .set({ checkRunAnnotations: 50, reportedAt: null })
      .where(eq(prRuns.id, run.id));
    const body = { id: created.id, output: { annotations_count: '100', text: null } };
    setup.fake.queueResponse({ method: 'GET', path: checkRunPattern, status: 200, body });
    const patchPath = `${checkRunsPath}/${created.id}`;
    const updatesBefore = requestCount('PATCH', patchPath);

    const error = await reportRun(setup.context, run.id, setup.context.logger).catch(
      (caught: unknown) => caught,
    );

    expectInvalidResponse(
      error,
      `GET ${patchPath}`,
      'output.annotations_count: Invalid input: expected number, received string',
    );
    // An unchecked count of 100 would have the update send lines 51 to 100 again.
    expect(requestCount('PATCH', patchPath)).toBe(updatesBefore);
    expect(created.annotations).toHaveLength(100);
    const stored = await storedRun(run.id);
    expect(stored.checkRunAnnotations).toBe(50);
    expect(stored.checkRunId).toBe(created.id);
  }, 60_000);
});

describe('report, oversized response', () => {
  it('fails at once', async () => {
    const { run, jobId } = await queuedReport(1, 4);
    const listPath = `/repos/${owner}/${repo}/commits/${run.headSha}/check-runs`;
    const body = Buffer.alloc(maxResponseBytes + 1, ' ');
    setup.fake.queueResponse({ method: 'GET', path: listPath, status: 200, body });
    const listsBefore = requestCount('GET', listPath);
    const failedBefore = logsOf(setup.context, 'job.report.failed').length;

    expect(await attempt(jobId)).toBeNull();

    const job = await setup.context.boss.getJobById(reportQueue, jobId);
    expect(job?.state).toBe('completed');
    expect(job?.retryCount).toBe(0);
    expect(requestCount('GET', listPath) - listsBefore).toBe(1);
    const problem = 'the response is larger than the limit of 1048576 bytes (1 MiB)';
    const stored = await storedRun(run.id);
    expect(stored.reportError).toBe(reportError(`GET ${listPath}`, problem));
    expect(stored.checkRunId).toBeNull();
    expect(stored.reportedAt).toBeNull();
    expect(checkRunsOf(run.id)).toEqual([]);
    const failed = logsOf(setup.context, 'job.report.failed').slice(failedBefore);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.finalAttempt).toBe(true);
    expect(failed[0]!.attempt).toBe(0);
    expect(failed[0]!.err).toMatchObject({
      type: 'GitHubResponseTooLargeError',
      request: `GET ${listPath}`,
    });
  }, 60_000);
});

describe('report, invalid comment response', () => {
  it.each(invalidCreateAnswers)('adopts a comment answered %s', async (_case, answer) => {
    const run = await insertWarnedRun(setup, 1);
    answerAfterWork('createComment', answer);
    const createsBefore = requestCount('POST', commentsPath);

    const outcome = await reportRun(setup.context, run.id, setup.context.logger);

    expect(requestCount('POST', commentsPath) - createsBefore).toBe(1);
    expect(setup.fake.issueComments).toHaveLength(1);
    const commentId = setup.fake.issueComments[0]!.id;
    expect(outcome).toMatchObject({ status: 'reported', comment: { action: 'created', commentId } });
    expect(await storedCommentId()).toBe(commentId);
    expect((await storedRun(run.id)).reportedAt).toBeInstanceOf(Date);
  }, 60_000);

  it('posts a comment again that GitHub did not create', async () => {
    const { run, jobId } = await queuedReport(1, 1);
    setup.fake.queueResponse({ method: 'POST', path: commentsPath, status: 201, body: { body: 'x' } });
    const createsBefore = requestCount('POST', commentsPath);

    const error = await attempt(jobId);

    expectInvalidResponse(
      error,
      `POST ${commentsPath}`,
      'id: Invalid input: expected number, received undefined',
    );
    expect(setup.fake.issueComments).toEqual([]);
    expect(await storedCommentId()).toBeUndefined();
    // The check run stays stored, so the retry does not create another.
    const checkRun = checkRunsOf(run.id);
    expect(checkRun).toHaveLength(1);
    expect((await storedRun(run.id)).checkRunId).toBe(checkRun[0]!.id);

    expect(await attempt(jobId)).toBeNull();

    expect(requestCount('POST', commentsPath) - createsBefore).toBe(2);
    expect(setup.fake.issueComments).toHaveLength(1);
    expect(await storedCommentId()).toBe(setup.fake.issueComments[0]!.id);
    expect(checkRunsOf(run.id)).toHaveLength(1);
    expect((await storedRun(run.id)).reportedAt).toBeInstanceOf(Date);
  }, 60_000);

  it('posts nothing after an invalid page of comments', async () => {
    const { run, jobId } = await queuedReport(1, 0);
    const page = [{ id: 'one', body: 'text' }];
    setup.fake.queueResponse({ method: 'GET', path: commentsPath, status: 200, body: page });
    const createsBefore = requestCount('POST', commentsPath);
    const problem = '0.id: Invalid input: expected number, received string';

    const error = await attempt(jobId);

    expectInvalidResponse(error, `GET ${commentsPath}`, problem);
    expect(requestCount('POST', commentsPath)).toBe(createsBefore);
    expect(await storedCommentId()).toBeUndefined();
    const stored = await storedRun(run.id);
    expect(stored.reportError).toBe(reportError(`GET ${commentsPath}`, problem));
    expect(stored.checkRunId).toBe(checkRunsOf(run.id)[0]!.id);
  }, 60_000);

  it('fails on an invalid edit response', async () => {
    const first = await insertWarnedRun(setup, 1);
    await reportRun(setup.context, first.id, setup.context.logger);
    const commentId = setup.fake.issueComments[0]!.id;
    const second = await insertWarnedRun(setup, 2);
    const editPath = `/repos/${owner}/${repo}/issues/comments/${commentId}`;
    setup.fake.queueResponse({ method: 'PATCH', path: editPath, status: 200, ...htmlPage });

    const error = await reportRun(setup.context, second.id, setup.context.logger).catch(
      (caught: unknown) => caught,
    );

    expectInvalidResponse(
      error,
      `PATCH ${editPath}`,
      'body: Invalid input: expected object, received string',
    );
    expect((await storedRun(second.id)).reportedAt).toBeNull();
    expect(await storedCommentId()).toBe(commentId);
  }, 60_000);
});

/**
 * Inserts a run with one warning and reports it, then returns it with its check run, the check
 * run's path and the data of a notice job for a press on that check run.
 */
async function reportedPress() {
  const run = await insertWarnedRun(setup, 1);
  await reportRun(setup.context, run.id, setup.context.logger);
  const checkRun = checkRunsOf(run.id)[0]!;
  const data: FixPressNoticeJobData = {
    runId: run.id,
    checkRunId: checkRun.id,
    pressedAt: Date.now(),
    sender: null,
    notice: { kind: 'no_owner' },
  };
  return { checkRun, checkRunPath: `${checkRunsPath}/${checkRun.id}`, data };
}

describe('fix press notice, oversized response', () => {
  it('fails at once', async () => {
    const { checkRun, checkRunPath, data } = await reportedPress();
    const jobId = (await setup.context.boss.send(fixPressNoticeQueue, data, { retryLimit: 4 }))!;
    const body = Buffer.alloc(maxResponseBytes + 1, ' ');
    setup.fake.queueResponse({ method: 'GET', path: checkRunPath, status: 200, body });
    const readsBefore = requestCount('GET', checkRunPath);
    const updatesBefore = requestCount('PATCH', checkRunPath);

    const error = await runDueJob<FixPressNoticeJobData>(setup.context, fixPressNoticeQueue, jobId, (job) =>
      handleFixPressNoticeJob(setup.context, job),
    ).then(
      () => null,
      (caught: unknown) => caught,
    );

    expect(error).toBeNull();
    const job = await setup.context.boss.getJobById(fixPressNoticeQueue, jobId);
    expect(job?.state).toBe('completed');
    expect(job?.retryCount).toBe(0);
    expect(requestCount('GET', checkRunPath) - readsBefore).toBe(1);
    expect(requestCount('PATCH', checkRunPath)).toBe(updatesBefore);
    expect(checkRun.output.text).toBeNull();
    const failed = logsOf(setup.context, 'job.fix_press_notice.failed', { jobId });
    expect(failed).toHaveLength(1);
    expect(failed[0]!.finalAttempt).toBe(true);
    expect(failed[0]!.attempt).toBe(0);
    expect(failed[0]!.msg).toBe('fix press notice failed: a GitHub response is larger than the limit');
    expect(failed[0]!.err).toMatchObject({
      type: 'GitHubResponseTooLargeError',
      message:
        `GitHub's response to GET ${checkRunPath} is larger than the limit of 1048576 bytes ` +
        '(1 MiB) that Fixwright reads.',
      request: `GET ${checkRunPath}`,
    });
  }, 60_000);
});

describe('fix press notice, invalid check run response', () => {
  it('writes nothing', async () => {
    const { checkRun, checkRunPath, data } = await reportedPress();
    const body = { id: checkRun.id, external_id: data.runId, output: { title: 7, summary: null, text: null } };
    setup.fake.queueResponse({ method: 'GET', path: checkRunPath, status: 200, body });
    const updatesBefore = requestCount('PATCH', checkRunPath);

    const error = await publishFixPressNotice(setup.context, data, setup.context.logger).catch(
      (caught: unknown) => caught,
    );

    expectInvalidResponse(
      error,
      `GET ${checkRunPath}`,
      'output.title: Invalid input: expected string, received number',
    );
    expect(requestCount('PATCH', checkRunPath)).toBe(updatesBefore);
    expect(checkRun.output.text).toBeNull();
  }, 60_000);
});
