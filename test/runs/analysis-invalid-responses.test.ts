// Analyzing when GitHub returns a 200 response that lacks or mistypes a field that the analysis
// reads. An invalid pull request or page of files fails the analyze job, which pg-boss retries.
// The last attempt stores an error that names the request and the field, and keeps the findings
// and base of the earlier analysis. A response over the size limit fails the run at once.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { fetchPullRequestState } from '../../src/github/pull-request-state.ts';
import { maxGitHubResponseBytes } from '../../src/github/responses.ts';
import { analyzeQueue, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import { queuedAgainValues } from '../../src/runs/queued-again.ts';
import { owner, pullNumber, repo } from '../github/harness.ts';
import { logsOf } from '../helpers/context.ts';
import { attemptAnalyzeJob, createAnalyzeTestContext, type AnalyzeTestContext } from './analyze-context.ts';

const pullPath = `/repos/${owner}/${repo}/pulls/${pullNumber}`;
const filesPath = `${pullPath}/files`;
const htmlPage = {
  headers: { 'content-type': 'text/html' },
  body: '<html><body>Service Unavailable</body></html>',
};

let setup: AnalyzeTestContext;

beforeAll(async () => {
  setup = await createAnalyzeTestContext({
    base: { 'README.md': '# Widgets\n' },
    head: { 'README.md': '# Widgets\n', 'src/app.ts': "console.log('ready');\n" },
  });
});

afterAll(async () => {
  await setup?.close();
});

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

async function findingIds(runId: string): Promise<string[]> {
  const rows = await setup.context.db
    .select({ id: findings.id })
    .from(findings)
    .where(eq(findings.runId, runId))
    .orderBy(findings.id);
  return rows.map((row) => row.id);
}

/** Returns the body that the fake GitHub serves for GET `path`, for a test to change. */
async function servedBody(path: string): Promise<any> {
  const { data } = await setup.harness.octokit.request(`GET ${path}`);
  return data;
}

/**
 * Creates a run, analyzes it, then queues it again with a new analyze job of `retryLimit`
 * retries, as a push back to its commit does. Returns the run as the first analysis stored it.
 */
async function analyzedRunQueuedAgain(retryLimit: number) {
  const run = await setup.createRun();
  const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);
  expect(outcome.status).toBe('completed');
  const analyzed = await storedRun(run.id);
  const data: AnalyzeJobData = { runId: run.id };
  const jobId = (await setup.context.boss.send(analyzeQueue, data, { retryLimit }))!;
  const base = { sha: analyzed.baseSha, ref: analyzed.baseRef };
  await setup.context.db
    .update(prRuns)
    .set({ ...queuedAgainValues({ base }, new Date()), analyzeJobId: jobId })
    .where(eq(prRuns.id, run.id));
  return { analyzed, jobId };
}

/** Runs analyze job `jobId` as a worker does, and returns what it threw, or null. */
function attempt(jobId: string): Promise<unknown> {
  return attemptAnalyzeJob(setup.context, jobId);
}

async function jobState(jobId: string) {
  return (await setup.context.boss.getJobById(analyzeQueue, jobId))?.state;
}

function requestsTo(path: string): number {
  return setup.harness.fake.requests.filter((request) => request.path === path).length;
}

function invalidResponseError(path: string, problem: string): string {
  return (
    `Analysis failed: GitHub returned an invalid response (status 200) to GET ${path}: ` +
    `${problem}. GitHub, or a proxy between this server and GITHUB_API_URL, may be failing. ` +
    'Once it responds normally, push a commit or redeliver the event.'
  );
}

type Change = (served: any) => { body: unknown; headers?: Record<string, string> };

const cases: [string, string, Change, string][] = [
  [
    'a pull request without head',
    pullPath,
    (served) => ({ body: { ...served, head: undefined } }),
    'head: Invalid input: expected object, received undefined',
  ],
  [
    'a pull request with a malformed base sha',
    pullPath,
    (served) => ({ body: { ...served, base: { ...served.base, sha: 'main' } } }),
    'base.sha: expected a commit sha of 40 lowercase hex digits',
  ],
  [
    'a pull request with an empty base ref',
    pullPath,
    (served) => ({ body: { ...served, base: { ...served.base, ref: '' } } }),
    'base.ref: expected a branch name',
  ],
  [
    'a pull request with changed_files as a string',
    pullPath,
    (served) => ({ body: { ...served, changed_files: '1' } }),
    'changed_files: Invalid input: expected number, received string',
  ],
  [
    "a pull request as a proxy's HTML page",
    pullPath,
    () => htmlPage,
    'body: Invalid input: expected object, received string',
  ],
  [
    'a page of files with a mistyped field',
    filesPath,
    (served) => ({ body: [{ ...served[0], additions: '1' }] }),
    '0.additions: Invalid input: expected number, received string',
  ],
  [
    "a page of files as a proxy's HTML page",
    filesPath,
    () => htmlPage,
    'body: Invalid input: expected array, received string',
  ],
];

describe('analysis, invalid GitHub response', () => {
  it.each(cases)('fails the last attempt on %s', async (_case, path, change, problem) => {
    const { analyzed, jobId } = await analyzedRunQueuedAgain(0);
    const findingsBefore = await findingIds(analyzed.id);
    expect(findingsBefore).toHaveLength(1);
    const { body, headers } = change(await servedBody(path));
    setup.harness.fake.queueResponse({ method: 'GET', path, status: 200, body, headers });
    const requestsBefore = requestsTo(path);
    const failedBefore = logsOf(setup.context, 'job.analyze.failed').length;

    const error = await attempt(jobId);

    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe(problem);
    // Octokit's retry plugin does not send a request again for a 200 response.
    expect(requestsTo(path) - requestsBefore).toBe(1);
    const stored = await storedRun(analyzed.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(invalidResponseError(path, problem));
    expect(stored.completedAt).toBeInstanceOf(Date);
    expect(stored.baseSha).toBe(analyzed.baseSha);
    expect(stored.baseRef).toBe(analyzed.baseRef);
    expect(await findingIds(analyzed.id)).toEqual(findingsBefore);
    const logged = logsOf(setup.context, 'job.analyze.failed').slice(failedBefore);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.finalAttempt).toBe(true);
    expect(logged[0]!.err).toMatchObject({ type: 'UnexpectedGitHubAnswerError', message: problem });
    expect((logged[0]!.err as { request?: unknown }).request).toBe(`GET ${path}`);
    expect(await jobState(jobId)).toBe('failed');
  });

  it('fails an oversized response at once', async () => {
    const { analyzed, jobId } = await analyzedRunQueuedAgain(4);
    const findingsBefore = await findingIds(analyzed.id);
    const body = Buffer.alloc(maxGitHubResponseBytes + 1, ' ');
    setup.harness.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body });
    const requestsBefore = requestsTo(pullPath);
    const failedBefore = logsOf(setup.context, 'job.analyze.failed').length;

    expect(await attempt(jobId)).toBeNull();

    expect(await jobState(jobId)).toBe('completed');
    const job = await setup.context.boss.getJobById(analyzeQueue, jobId);
    expect(job?.retryCount).toBe(0);
    expect(requestsTo(pullPath) - requestsBefore).toBe(1);
    const stored = await storedRun(analyzed.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(
      `Analysis failed: GitHub returned an invalid response (status 200) to GET ${pullPath}: ` +
        'the response is larger than the limit of 67108864 bytes (64 MiB).',
    );
    expect(stored.completedAt).toBeInstanceOf(Date);
    expect(await findingIds(analyzed.id)).toEqual(findingsBefore);
    const logged = logsOf(setup.context, 'job.analyze.failed').slice(failedBefore);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.finalAttempt).toBe(true);
    expect(logged[0]!.attempt).toBe(0);
    expect(logged[0]!.err).toMatchObject({
      type: 'GitHubResponseTooLargeError',
      request: `GET ${pullPath}`,
    });
  });

  it('reads no files after an invalid pull request', async () => {
    const { jobId } = await analyzedRunQueuedAgain(0);
    // Without the check, the analysis would list the files and store this base sha.
    const served = await servedBody(pullPath);
    const body = { ...served, base: { ...served.base, sha: 'main' } };
    setup.harness.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body });
    const listedBefore = requestsTo(filesPath);

    await attempt(jobId);

    expect(requestsTo(filesPath)).toBe(listedBefore);
  });

  it.each([
    ['pull request', pullPath],
    ['page of files', filesPath],
  ])('retries an invalid %s, then completes', async (_name, path) => {
    const { analyzed, jobId } = await analyzedRunQueuedAgain(4);
    const findingsBefore = await findingIds(analyzed.id);
    setup.harness.fake.queueResponse({ method: 'GET', path, status: 200, ...htmlPage });
    const failedBefore = logsOf(setup.context, 'job.analyze.failed').length;

    const error = await attempt(jobId);

    expect(error).toBeInstanceOf(Error);
    expect(await jobState(jobId)).toBe('retry');
    const waiting = await storedRun(analyzed.id);
    expect(waiting.status).toBe('analyzing');
    // The run shows the failed attempt until the retry completes it.
    const expected = path === pullPath ? 'object' : 'array';
    const problem = `body: Invalid input: expected ${expected}, received string`;
    const description = invalidResponseError(path, problem).slice('Analysis failed: '.length);
    expect(waiting.error).toBe(`Attempt 1 of 5 failed, so the analysis is retried: ${description}`);
    const logged = logsOf(setup.context, 'job.analyze.failed').slice(failedBefore);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.finalAttempt).toBe(false);

    // The fake serves its own well-formed response to the next attempt.
    expect(await attempt(jobId)).toBeNull();

    expect(await jobState(jobId)).toBe('completed');
    const completed = await storedRun(analyzed.id);
    expect(completed.status).toBe('completed');
    expect(completed.error).toBeNull();
    expect(completed.baseSha).toBe(setup.harness.repository.baseSha);
    expect(completed.baseRef).toBe('main');
    expect(completed.unlistedFiles).toBe(0);
    const findingsAfter = await findingIds(analyzed.id);
    expect(findingsAfter).toHaveLength(findingsBefore.length);
  });
});

/**
 * Returns the served page of files with src/app.ts given `status` and no patch, as GitHub sends
 * a file whose diff is too large, so that the analysis reads the file itself.
 */
async function filesWithoutPatch(status: 'added' | 'modified') {
  const served: Record<string, unknown>[] = await servedBody(filesPath);
  return served.map((file) =>
    file.filename === 'src/app.ts' ? { ...file, status, patch: undefined } : file,
  );
}

const contentsPath = `/repos/${owner}/${repo}/contents/src/app.ts`;
/** Matches the contents request of src/app.ts, whose path Octokit sends as `src%2Fapp.ts`. */
const contentsPattern = new RegExp(`^/repos/${owner}/${repo}/contents/src(/|%2F)app\\.ts$`, 'i');

/** Returns the contents response for src/app.ts at the head, as the fake serves it. */
async function servedContents(): Promise<Record<string, any>> {
  return servedBody(`${contentsPath}?ref=${setup.harness.repository.headSha}`);
}

/** Queues the invalid response of a file read and returns its request path and problem. */
type FileReadChange = () => Promise<{ path: string; problem: string }>;

const fileReadCases: [string, FileReadChange][] = [
  [
    "contents as a proxy's HTML page",
    async () => {
      setup.harness.fake.queueResponse({ method: 'GET', path: contentsPattern, status: 200, ...htmlPage });
      return { path: contentsPath, problem: 'body: Invalid input: expected object, received string' };
    },
  ],
  [
    'contents without a blob sha',
    async () => {
      const body = { ...(await servedContents()), sha: undefined };
      setup.harness.fake.queueResponse({ method: 'GET', path: contentsPattern, status: 200, body });
      return { path: contentsPath, problem: 'sha: Invalid input: expected string, received undefined' };
    },
  ],
  [
    'a blob without content',
    async () => {
      // A file over 1 MB comes without content, so the analysis reads its blob.
      const served = await servedContents();
      const body = { ...served, encoding: 'none', content: '' };
      setup.harness.fake.queueResponse({ method: 'GET', path: contentsPattern, status: 200, body });
      const blobPath = `/repos/${owner}/${repo}/git/blobs/${served.sha}`;
      const blob = { sha: served.sha, size: served.size, encoding: 'base64' };
      setup.harness.fake.queueResponse({ method: 'GET', path: blobPath, status: 200, body: blob });
      return { path: blobPath, problem: 'content: Invalid input: expected string, received undefined' };
    },
  ],
];

describe('analysis, invalid file read', () => {
  it.each(fileReadCases)('fails the last attempt on %s', async (_case, queueInvalid) => {
    const { analyzed, jobId } = await analyzedRunQueuedAgain(0);
    const findingsBefore = await findingIds(analyzed.id);
    const files = await filesWithoutPatch('added');
    setup.harness.fake.queueResponse({ method: 'GET', path: filesPath, status: 200, body: files });
    const { path, problem } = await queueInvalid();
    const failedBefore = logsOf(setup.context, 'job.analyze.failed').length;

    const error = await attempt(jobId);

    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe(problem);
    const stored = await storedRun(analyzed.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(invalidResponseError(path, problem));
    expect(stored.baseSha).toBe(analyzed.baseSha);
    expect(await findingIds(analyzed.id)).toEqual(findingsBefore);
    const logged = logsOf(setup.context, 'job.analyze.failed').slice(failedBefore);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.finalAttempt).toBe(true);
    expect(logged[0]!.err).toMatchObject({ type: 'UnexpectedGitHubAnswerError', message: problem });
    expect(await jobState(jobId)).toBe('failed');
  });

  it('keeps a modified file unchecked after an invalid comparison', async () => {
    const { analyzed, jobId } = await analyzedRunQueuedAgain(0);
    const files = await filesWithoutPatch('modified');
    setup.harness.fake.queueResponse({ method: 'GET', path: filesPath, status: 200, body: files });
    const comparePattern = '/repos/:owner/:repo/compare/*basehead';
    setup.harness.fake.queueResponse({ method: 'GET', path: comparePattern, status: 200, ...htmlPage });
    const failedBefore = logsOf(setup.context, 'analyze.merge_base_failed').length;
    const missingBefore = logsOf(setup.context, 'analyze.merge_base_missing').length;
    const contentsRequests = () =>
      setup.harness.fake.requests.filter((request) => contentsPattern.test(request.path)).length;
    const contentsBefore = contentsRequests();

    expect(await attempt(jobId)).toBeNull();

    const stored = await storedRun(analyzed.id);
    expect(stored.status).toBe('completed');
    expect(stored.error).toBeNull();
    expect(stored.uncheckedFiles).toEqual(['src/app.ts']);
    expect(await findingIds(analyzed.id)).toEqual([]);
    const failed = logsOf(setup.context, 'analyze.merge_base_failed').slice(failedBefore);
    expect(failed).toHaveLength(1);
    const { headSha } = setup.harness.repository;
    expect(failed[0]!.request).toBe(`GET /repos/${owner}/${repo}/compare/main...${headSha}`);
    expect(failed[0]!.status).toBe(200);
    expect(failed[0]!.err).toMatchObject({
      type: 'UnexpectedGitHubAnswerError',
      message: 'body: Invalid input: expected object, received string',
    });
    // An HTML page does not show that the commits have no merge base.
    expect(logsOf(setup.context, 'analyze.merge_base_missing')).toHaveLength(missingBefore);
    expect(contentsRequests()).toBe(contentsBefore);
  });
});

describe('stored dot repository names', () => {
  it('analysis sends no request', async () => {
    const run = await setup.createRun();
    await setup.context.db.update(prRuns).set({ repository: '../..' }).where(eq(prRuns.id, run.id));
    const before = setup.harness.fake.requests.length;

    await expect(analyzeRun(setup.context, run.id, setup.context.logger)).rejects.toThrow(
      'Invalid repository name "../..": GitHub does not allow "." or ".." as OWNER or NAME, ' +
        'so no request is sent for it.',
    );
    expect(setup.harness.fake.requests.slice(before).map((request) => request.path)).toEqual([]);
  });

  it('pull request check sends no request', async () => {
    const before = setup.harness.fake.requests.length;
    const target = {
      installationId: setup.harness.installationId,
      repositoryId: 1,
      repository: `${owner}/..`,
      prNumber: pullNumber,
    };

    await expect(fetchPullRequestState(setup.harness.app, target)).rejects.toThrow(
      'Invalid repository name "octo-org/.."',
    );
    expect(setup.harness.fake.requests.slice(before)).toEqual([]);
  });

  it('rejects a head repository renamed to dots', async () => {
    const pullPath = `/repos/${owner}/${repo}/pulls/${pullNumber}`;
    const { data } = await setup.harness.octokit.request(`GET ${pullPath}`);
    const served = data as any;
    const body = { ...served, head: { ...served.head, repo: { ...served.head.repo, full_name: '../..' } } };
    setup.harness.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body });
    const target = {
      installationId: setup.harness.installationId,
      repositoryId: served.base.repo.id as number,
      repository: `${owner}/${repo}`,
      prNumber: pullNumber,
    };

    await expect(fetchPullRequestState(setup.harness.app, target)).rejects.toThrow(
      'head.repo.full_name: "../.." is invalid: OWNER and NAME must not be "." or ".."',
    );
  });
});
