// An analysis whose run is cancelled, superseded, queued again or deleted while it runs stops
// before its next file, within a second inside a file, or before it stores its findings, and
// stores nothing.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import {
  AnalysisStopped,
  readStopReason,
  runStopCheckpoint,
} from '../../src/runs/analysis-stop.ts';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  fakePullRequestEvent,
  insertInstallation,
  insertQueuedAnalysis,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';

const filesPath = '/repos/:owner/:repo/pulls/:pull_number/files';
const treePath = '/repos/:owner/:repo/git/trees/:tree_sha';

/** Runs once after the analysis first reads the run, before it marks the run `analyzing`. */
const hooks = vi.hoisted(() => ({ afterRunRead: null as (() => Promise<void>) | null }));

vi.mock('../../src/github/installation-unavailable.ts', async (importOriginal) => {
  const actual =
    await importOriginal<typeof import('../../src/github/installation-unavailable.ts')>();
  return {
    ...actual,
    async requireActiveInstallation(...args: Parameters<typeof actual.requireActiveInstallation>) {
      const hook = hooks.afterRunRead;
      hooks.afterRunRead = null;
      await hook?.();
      return actual.requireActiveInstallation(...args);
    },
  };
});

let setup: GitHubTestContext;
/**
 * Hooks by route pattern of the fake GitHub. Each runs once, at the next request to its route,
 * after the fake built the response: `filesPath` when the analysis lists the pull request's
 * files, `treePath` when it reads a git tree for file sizes (after the rules, before storing).
 */
const routeHooks = new Map<string, () => Promise<void>>();

/** Handles a `pull_request` event of the fake pull request with `action` at 09:10. */
async function pullRequestEvent(action: 'closed' | 'synchronize', headSha = setup.git.headSha) {
  const event = fakePullRequestEvent(setup, action);
  event.pull_request.head.sha = headSha;
  event.pull_request.updated_at = '2024-06-01T09:10:00Z';
  if (action === 'closed') {
    event.pull_request.state = 'closed';
    event.pull_request.closed_at = '2024-06-01T09:10:00Z';
  }
  const payload = pullRequestPayload.parse(event);
  return setup.context.db.transaction((tx) =>
    handlePullRequestEvent(tx, setup.context.boss, payload),
  );
}

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

async function findingCount(runId: string): Promise<number> {
  const rows = await setup.context.db.select().from(findings).where(eq(findings.runId, runId));
  return rows.length;
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\nconsole.log(a);\n' },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
  for (const pattern of [filesPath, treePath]) {
    const route = defaultRoutes.find(
      (candidate) => candidate.method === 'GET' && candidate.pattern === pattern,
    )!;
    setup.fake.addRoute({
      ...route,
      async handle(context) {
        const response = await route.handle(context);
        const hook = routeHooks.get(pattern);
        routeHooks.delete(pattern);
        await hook?.();
        return response;
      },
    });
  }
});

beforeEach(() => {
  routeHooks.clear();
  hooks.afterRunRead = null;
});

afterAll(async () => {
  await setup?.close();
});

describe('analysis of a run that is stopped meanwhile', () => {
  it('stores nothing after a close', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    routeHooks.set(filesPath, async () => {
      await pullRequestEvent('closed');
    });

    await runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
      handleAnalyzeJob(setup.context, job),
    );

    const stored = await storedRun(run.id);
    expect(stored.status).toBe('cancelled');
    expect(stored.error).toBe('Cancelled: the pull request was closed before analysis.');
    expect(stored.reportJobId).toBeNull();
    expect(await findingCount(run.id)).toBe(0);
    expect((await setup.context.boss.getJobById(analyzeQueue, jobId))?.state).toBe('cancelled');
    const stops = logsOf(setup.context, 'analyze.stopped', { runId: run.id });
    expect(stops).toHaveLength(1);
    expect(stops[0]!.reason).toBe(
      'the run is cancelled: Cancelled: the pull request was closed before analysis.',
    );
    expect(logsOf(setup.context, 'job.analyze.failed', { runId: run.id })).toEqual([]);
  });

  it('stores nothing after a push', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    const newerSha = 'c'.repeat(40);
    routeHooks.set(filesPath, async () => {
      await pullRequestEvent('synchronize', newerSha);
    });

    await runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
      handleAnalyzeJob(setup.context, job),
    );

    const stored = await storedRun(run.id);
    expect(stored.status).toBe('superseded');
    expect(await findingCount(run.id)).toBe(0);
    const stops = logsOf(setup.context, 'analyze.stopped', { runId: run.id });
    expect(stops).toHaveLength(1);
    expect(stops[0]!.reason).toMatch(
      new RegExp(`^the run is superseded: Superseded by run [0-9a-f-]{36} for the newer commit ${newerSha}\\.$`),
    );
    expect(logsOf(setup.context, 'job.analyze.failed', { runId: run.id })).toEqual([]);
  });
});

/**
 * Queues the run again with a new analyze job and cancels job `jobId`, as a base change does,
 * and returns the new job's id.
 */
async function queueAgain(runId: string, jobId: string): Promise<string> {
  const data: AnalyzeJobData = { runId };
  const newJobId = (await setup.context.boss.send(analyzeQueue, data))!;
  await setup.context.db
    .update(prRuns)
    .set({ status: 'queued', error: null, completedAt: null, analyzeJobId: newJobId })
    .where(eq(prRuns.id, runId));
  await setup.context.boss.cancel(analyzeQueue, jobId);
  return newJobId;
}

async function analyze(jobId: string): Promise<void> {
  await runDueJob<AnalyzeJobData>(setup.context, analyzeQueue, jobId, (job) =>
    handleAnalyzeJob(setup.context, job),
  );
}

describe('analysis of a run that is stopped after the rules', () => {
  const cases = [
    {
      name: 'closed',
      async stop() {
        await pullRequestEvent('closed');
        return {
          status: 'cancelled',
          reason: 'the run is cancelled: Cancelled: the pull request was closed before analysis.',
          jobState: 'cancelled',
        };
      },
    },
    {
      name: 'superseded',
      async stop() {
        await pullRequestEvent('synchronize', 'd'.repeat(40));
        return { status: 'superseded', reason: /^the run is superseded: Superseded by run /, jobState: 'cancelled' };
      },
    },
    {
      name: 'queued again',
      async stop(runId: string, jobId: string) {
        const newJobId = await queueAgain(runId, jobId);
        return {
          status: 'queued',
          reason: `the run was queued again with analyze job ${newJobId}`,
          jobState: 'cancelled',
        };
      },
    },
    {
      name: 'deleted',
      async stop(runId: string) {
        await setup.context.db.delete(prRuns).where(eq(prRuns.id, runId));
        return { status: undefined, reason: 'the run no longer exists', jobState: 'completed' };
      },
    },
  ];

  for (const { name, stop } of cases) {
    it(`stores nothing for a run ${name}`, async () => {
      const { run, jobId } = await insertQueuedAnalysis(setup);
      let expected: Awaited<ReturnType<typeof stop>> | undefined;
      routeHooks.set(treePath, async () => {
        expected = await stop(run.id, jobId);
      });

      await analyze(jobId);

      expect(expected).toBeDefined();
      const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
      expect(stored?.status).toBe(expected!.status);
      expect(stored?.reportJobId ?? null).toBeNull();
      expect(await findingCount(run.id)).toBe(0);
      expect((await setup.context.boss.getJobById(analyzeQueue, jobId))?.state).toBe(
        expected!.jobState,
      );
      const stops = logsOf(setup.context, 'analyze.stopped', { runId: run.id });
      expect(stops).toHaveLength(1);
      if (typeof expected!.reason === 'string') {
        expect(stops[0]!.reason).toBe(expected!.reason);
      } else {
        expect(stops[0]!.reason).toMatch(expected!.reason);
      }
      expect(logsOf(setup.context, 'job.analyze.failed', { runId: run.id })).toEqual([]);
    });
  }

  it('keeps the findings of the job that replaced it', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    let newJobId: string | undefined;
    // The new job runs to the end while the old one waits for its tree read.
    routeHooks.set(treePath, async () => {
      newJobId = await queueAgain(run.id, jobId);
      await analyze(newJobId);
    });

    await analyze(jobId);

    const stored = await storedRun(run.id);
    expect(stored.status).toBe('completed');
    expect(stored.analyzeJobId).toBe(newJobId);
    expect(stored.reportJobId).not.toBeNull();
    expect(await findingCount(run.id)).toBe(1);
    expect((await setup.context.boss.getJobById(analyzeQueue, newJobId!))?.state).toBe('completed');
    const stops = logsOf(setup.context, 'analyze.stopped', { runId: run.id });
    expect(stops).toHaveLength(1);
    expect(stops[0]!.jobId).toBe(jobId);
    expect(stops[0]!.reason).toBe(`the run was queued again with analyze job ${newJobId}`);
  });
});

describe('analysis of a run queued again before it starts', () => {
  it('leaves the run queued for the new job', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    let newJobId: string | undefined;
    hooks.afterRunRead = async () => {
      newJobId = await queueAgain(run.id, jobId);
    };

    await analyze(jobId);

    const stored = await storedRun(run.id);
    expect(stored.analyzeJobId).toBe(newJobId);
    expect(stored.status).toBe('queued');
    expect(await findingCount(run.id)).toBe(0);
    const stops = logsOf(setup.context, 'analyze.stopped', { runId: run.id });
    expect(stops).toHaveLength(1);
    expect(stops[0]!.reason).toBe(`the run was queued again with analyze job ${newJobId}`);
  });
});

describe('readStopReason', () => {
  it('names why a job stops', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    const read = () => readStopReason(setup.context.db, run.id, jobId);
    const set = (values: Partial<typeof prRuns.$inferInsert>) =>
      setup.context.db.update(prRuns).set(values).where(eq(prRuns.id, run.id));

    expect(await read()).toBeNull();
    await set({ status: 'analyzing' });
    expect(await read()).toBeNull();
    await set({ status: 'superseded', error: null });
    expect(await read()).toBe('the run is superseded');
    const otherJobId = '00000000-0000-4000-8000-000000000001';
    await set({ status: 'queued', analyzeJobId: otherJobId });
    expect(await read()).toBe(`the run was queued again with analyze job ${otherJobId}`);
    await setup.context.db.delete(prRuns).where(eq(prRuns.id, run.id));
    expect(await read()).toBe('the run no longer exists');
  });
});

describe('runStopCheckpoint', () => {
  it('reads the run at most once an interval', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    let now = 0;
    const checkpoint = runStopCheckpoint(
      setup.context.db,
      { runId: run.id, jobId },
      setup.context.logger,
      { intervalMs: 1_000, now: () => now },
    );

    await checkpoint();
    await setup.context.db
      .update(prRuns)
      .set({ status: 'cancelled', error: 'Cancelled in a test.' })
      .where(eq(prRuns.id, run.id));
    now = 999;
    // Not read again yet, so the cancel is not seen.
    await checkpoint();
    now = 1_999;
    const stop = await checkpoint().catch((error: unknown) => error);

    expect(stop).toBeInstanceOf(AnalysisStopped);
    expect((stop as AnalysisStopped).reason).toBe('the run is cancelled: Cancelled in a test.');
  });

  it('goes on after a failed read', async () => {
    const { run, jobId } = await insertQueuedAnalysis(setup);
    // The first read of the run fails as a dropped connection would, and later ones work.
    let failures = 1;
    const db = new Proxy(setup.context.db, {
      get(target, key, receiver) {
        if (key === 'select' && failures > 0) {
          failures -= 1;
          return () => ({
            from: () => ({
              where: () => Promise.reject(new Error('write CONNECTION_CLOSED 127.0.0.1:5432')),
            }),
          });
        }
        return Reflect.get(target, key, receiver);
      },
    }) as Database;
    let now = 0;
    const logger = setup.context.logger.child({ runId: run.id });
    const checkpoint = runStopCheckpoint(db, { runId: run.id, jobId }, logger, {
      intervalMs: 1_000,
      now: () => now,
    });

    await expect(checkpoint()).resolves.toBeUndefined();
    await setup.context.db
      .update(prRuns)
      .set({ status: 'cancelled', error: 'Cancelled in a test.' })
      .where(eq(prRuns.id, run.id));
    now = 1_000;
    const stop = await checkpoint().catch((error: unknown) => error);

    expect(failures).toBe(0);
    const failed = logsOf(setup.context, 'analyze.stop_check_failed', { runId: run.id });
    expect(failed).toHaveLength(1);
    expect(failed[0]!.level).toBe(40);
    expect((failed[0]!.err as { message: string }).message).toBe(
      'write CONNECTION_CLOSED 127.0.0.1:5432',
    );
    expect(stop).toBeInstanceOf(AnalysisStopped);
    expect((stop as AnalysisStopped).reason).toBe('the run is cancelled: Cancelled in a test.');
  });
});
