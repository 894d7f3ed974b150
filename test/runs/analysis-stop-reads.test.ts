// An analysis whose run is superseded while it reads files without a patch from GitHub stops
// reading at its next stop check, within about a second, and stores nothing.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { maxFileDiffLines } from '../../src/demo/fakes/github/git.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { runStateCheckIntervalMs } from '../../src/runs/analysis-stop.ts';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  fakePullRequestEvent,
  insertInstallation,
  insertQueuedAnalysis,
  owner,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';

const contentsPath = '/repos/:owner/:repo/contents/*path';

/**
 * Added files whose diffs are over GitHub's 20,000 lines, so the files API sends them without a
 * patch and the analysis reads each one through the contents API.
 */
const largeFiles = ['gen/part-1.ts', 'gen/part-2.ts', 'gen/part-3.ts', 'gen/part-4.ts'];

function generatedLines(): string {
  const lines = Array.from({ length: maxFileDiffLines + 1 }, (_, index) => `let v${index} = ${index};`);
  return `${lines.join('\n')}\n`;
}

let setup: GitHubTestContext;
/** Runs once, at the next contents request, after the fake built the response. */
let contentsHook: (() => Promise<void>) | null = null;

async function analyze(jobId: string): Promise<void> {
  await runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
    handleAnalyzeJob(setup.context, job),
  );
}

/** Returns the paths that the requests since `since` read through the contents API. */
function readPaths(since: number): string[] {
  const contents = `/repos/${owner}/${repo}/contents/`;
  return setup.fake.requests
    .slice(since)
    .filter((request) => request.method === 'GET' && request.path.startsWith(contents))
    .map((request) => decodeURIComponent(request.path.slice(contents.length).split('?')[0]!));
}

function blobReads(since: number): number {
  return setup.fake.requests
    .slice(since)
    .filter((request) => request.path.startsWith(`/repos/${owner}/${repo}/git/blobs/`)).length;
}

beforeAll(async () => {
  const head: Record<string, string> = {
    'src/app.ts': 'export const a = 2;\nconsole.log(a);\n',
  };
  for (const path of largeFiles) head[path] = generatedLines();
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head,
  });
  await insertInstallation(setup.context, { id: setup.installationId });
  const route = defaultRoutes.find(
    (candidate) => candidate.method === 'GET' && candidate.pattern === contentsPath,
  )!;
  setup.fake.addRoute({
    ...route,
    async handle(context) {
      const response = await route.handle(context);
      const hook = contentsHook;
      contentsHook = null;
      await hook?.();
      return response;
    },
  });
});

beforeEach(() => {
  contentsHook = null;
});

afterAll(async () => {
  await setup?.close();
});

describe('analysis that reads files without a patch', () => {
  it('reads every file of a live run', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    const since = setup.fake.requests.length;

    await analyze(jobId);

    expect(readPaths(since)).toEqual(largeFiles);
    expect(blobReads(since)).toBe(0);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('completed');
    expect(stored!.uncheckedFiles).toEqual([]);
  });

  it('stops reading once superseded', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    const since = setup.fake.requests.length;
    const newerSha = 'c'.repeat(40);
    contentsHook = async () => {
      const event = fakePullRequestEvent(setup, 'synchronize');
      event.pull_request.head.sha = newerSha;
      event.pull_request.updated_at = '2024-06-01T09:10:00Z';
      const payload = pullRequestPayload.parse(event);
      await setup.context.db.transaction((tx) =>
        handlePullRequestEvent(tx, setup.context.boss, payload),
      );
      // The stop check reads the run at most once a second, and it read the run before this
      // file, so the next read comes after the interval.
      await new Promise((resolve) => setTimeout(resolve, runStateCheckIntervalMs + 100));
    };

    await analyze(jobId);

    expect(contentsHook).toBeNull();
    expect(readPaths(since)).toEqual([largeFiles[0]]);
    expect(blobReads(since)).toBe(0);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('superseded');
    expect(stored!.reportJobId).toBeNull();
    const rows = await setup.context.db.select().from(findings).where(eq(findings.runId, run.id));
    expect(rows).toEqual([]);
    const stops = logsOf(setup.context, 'analyze.stopped', { runId: run.id });
    expect(stops).toHaveLength(1);
    expect(stops[0]!.reason).toMatch(
      new RegExp(`^the run is superseded: Superseded by run [0-9a-f-]{36} for the newer commit ${newerSha}\\.$`),
    );
    expect(logsOf(setup.context, 'job.analyze.failed', { runId: run.id })).toEqual([]);
    // No tree read for file sizes either: the analysis ended before its rules.
    const trees = setup.fake.requests
      .slice(since)
      .filter((request) => request.path.includes('/git/trees/'));
    expect(trees).toEqual([]);
  });
});
