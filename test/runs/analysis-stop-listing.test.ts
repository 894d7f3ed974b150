// An analysis whose run is superseded while it lists the pull request's files, or before it
// reads the merge base, stops at its next stop check and requests nothing more from GitHub.
// The pull request adds 250 files, which GitHub lists in three pages of 100, and modifies one
// file whose diff is over GitHub's 20,000 lines, which needs the merge base.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { maxFileDiffLines } from '../../src/demo/fakes/github/git.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { compareRoutes } from '../../src/demo/fakes/github/compare.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { runStateCheckIntervalMs } from '../../src/runs/analysis-stop.ts';
import {
  createGitHubTestContext,
  fakePullRequestEvent,
  insertInstallation,
  insertQueuedAnalysis,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';

const addedFiles = Array.from(
  { length: 250 },
  (_, index) => `src/part-${String(index).padStart(3, '0')}.ts`,
);
const largePath = 'src/large.ts';
const filesPattern = '/repos/:owner/:repo/pulls/:pull_number/files';

function generatedLines(): string {
  const count = maxFileDiffLines + 1;
  const lines = Array.from({ length: count }, (_, index) => `let v${index} = ${index};`);
  return `${lines.join('\n')}\n`;
}

let setup: GitHubTestContext;
/** Runs once, after the fake built the response to the files request of page `page`. */
let pageHook: { page: number; run: () => Promise<void> } | null = null;
/** Runs once, after the fake built the response to the next compare request. */
let compareHook: (() => Promise<void>) | null = null;

async function analyze(jobId: string): Promise<void> {
  await runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
    handleAnalyzeJob(setup.context, job),
  );
}

/** Returns the page numbers of the file list requests since `since`, in order. */
function listedPages(since: number): number[] {
  return setup.fake.requests
    .slice(since)
    .filter(
      (request) => request.method === 'GET' && request.path.endsWith(`/pulls/${prNumber}/files`),
    )
    .map((request) => Number(request.query.page ?? '1'));
}

function requestsTo(part: string, since: number) {
  return setup.fake.requests.slice(since).filter((request) => request.path.includes(part));
}

/** Delivers a push of a newer commit, which supersedes the run, then waits for the next check. */
async function supersedeRun(): Promise<void> {
  const event = fakePullRequestEvent(setup, 'synchronize');
  event.pull_request.head.sha = 'c'.repeat(40);
  event.pull_request.updated_at = '2024-06-01T09:10:00Z';
  const payload = pullRequestPayload.parse(event);
  await setup.context.db.transaction((tx) =>
    handlePullRequestEvent(tx, setup.context.boss, payload),
  );
  // The stop check reads the run at most once a second, so the next read comes after this.
  await new Promise((resolve) => setTimeout(resolve, runStateCheckIntervalMs + 100));
}

/** Checks that the run was stopped as superseded and stored nothing. */
async function expectStopped(runId: string): Promise<void> {
  const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  expect(stored!.status).toBe('superseded');
  expect(stored!.reportJobId).toBeNull();
  const rows = await setup.context.db.select().from(findings).where(eq(findings.runId, runId));
  expect(rows).toEqual([]);
  const stops = setup.context.logs.filter(
    (line) => line.event === 'analyze.stopped' && line.runId === runId,
  );
  expect(stops).toHaveLength(1);
  expect(stops[0]!.reason).toMatch(/^the run is superseded: Superseded by run [0-9a-f-]{36} /);
  const failures = setup.context.logs.filter(
    (line) => line.event === 'job.analyze.failed' && line.runId === runId,
  );
  expect(failures).toEqual([]);
}

beforeAll(async () => {
  const head: Record<string, string> = { [largePath]: generatedLines() };
  for (const [index, path] of addedFiles.entries()) {
    head[path] = `export const part${index} = ${index};\n`;
  }
  setup = await createGitHubTestContext({
    base: { [largePath]: 'let v0 = 0;\n' },
    head,
  });
  await insertInstallation(setup.context, { id: setup.installationId });
  const filesRoute = defaultRoutes.find(
    (candidate) => candidate.method === 'GET' && candidate.pattern === filesPattern,
  )!;
  setup.fake.addRoute({
    ...filesRoute,
    async handle(context) {
      const response = await filesRoute.handle(context);
      const hook = pageHook;
      if (hook && Number(context.url.searchParams.get('page') ?? '1') === hook.page) {
        pageHook = null;
        await hook.run();
      }
      return response;
    },
  });
  const compareRoute = compareRoutes[0]!;
  setup.fake.addRoute({
    ...compareRoute,
    async handle(context) {
      const response = await compareRoute.handle(context);
      const hook = compareHook;
      compareHook = null;
      await hook?.();
      return response;
    },
  });
});

beforeEach(() => {
  pageHook = null;
  compareHook = null;
});

afterAll(async () => {
  await setup?.close();
});

describe('analysis that lists many files', () => {
  it('lists every page of a live run', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    const since = setup.fake.requests.length;

    await analyze(jobId);

    expect(listedPages(since)).toEqual([1, 2, 3]);
    expect(requestsTo(`/repos/${owner}/${repo}/compare/`, since)).toHaveLength(1);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('completed');
    expect(stored!.uncheckedFiles).toEqual([]);
  });

  for (const page of [1, 2]) {
    it(`stops listing once superseded on page ${page}`, async () => {
      const { run, jobId } = await insertQueuedAnalysis(setup);
      const since = setup.fake.requests.length;
      pageHook = { page, run: supersedeRun };

      await analyze(jobId);

      expect(pageHook).toBeNull();
      expect(listedPages(since)).toEqual(Array.from({ length: page }, (_, index) => index + 1));
      expect(requestsTo('/compare/', since)).toEqual([]);
      expect(requestsTo('/contents/', since)).toEqual([]);
      await expectStopped(run.id);
    });
  }

  it('skips the merge base once superseded', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    const since = setup.fake.requests.length;
    // The last page has no next page to check before, so the check before the compare request
    // is the first after the supersede.
    pageHook = { page: 3, run: supersedeRun };

    await analyze(jobId);

    expect(pageHook).toBeNull();
    expect(listedPages(since)).toEqual([1, 2, 3]);
    expect(requestsTo('/compare/', since)).toEqual([]);
    expect(requestsTo('/contents/', since)).toEqual([]);
    await expectStopped(run.id);
  });

  it('reads no file once superseded during the compare', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    const since = setup.fake.requests.length;
    compareHook = supersedeRun;

    await analyze(jobId);

    expect(compareHook).toBeNull();
    expect(requestsTo('/compare/', since)).toHaveLength(1);
    expect(requestsTo('/contents/', since)).toEqual([]);
    expect(requestsTo('/git/blobs/', since)).toEqual([]);
    await expectStopped(run.id);
  });
});
