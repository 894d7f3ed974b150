// Analyzing a run whose commit is no longer the pull request's head. The run is superseded, and
// since the push's `synchronize` event may never arrive, a check of the pull request is queued
// in the same transaction, so the head commit gets a run.
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { confirmPullRequestQueue } from '../../src/jobs/confirm-pull-request-queue.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import { owner, pullNumber, repo } from '../github/harness.ts';
import { logsOf } from '../helpers/context.ts';
import { createAnalyzeTestContext, type AnalyzeTestContext } from './analyze-context.ts';

const pullPath = `/repos/${owner}/${repo}/pulls/${pullNumber}`;
const movedHeadSha = 'b'.repeat(40);

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

describe('analysis of a commit that is no longer the head', () => {
  it('supersedes the run and queues a check', async () => {
    const run = await setup.createRun();
    const { data: pullRequest } = await setup.harness.octokit.request(`GET ${pullPath}`);
    const moved = { ...pullRequest, head: { ...pullRequest.head, sha: movedHeadSha } };
    setup.harness.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body: moved });

    const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);

    expect(outcome).toEqual({ status: 'skipped', findings: 0, files: 0 });
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('superseded');
    expect(stored!.error).toBe(
      `The pull request's head on GitHub is now bbbbbbb, not this run's ${run.headSha.slice(0, 7)}, so ` +
        'this run stopped before its analysis. A run for bbbbbbb reports instead. That run comes ' +
        "from the pull request's synchronize event for bbbbbbb or, when that event is lost, from " +
        'the check of the pull request with GitHub that was queued when this run stopped.',
    );
    const jobs = await setup.context.db.execute<{ id: string; data: Record<string, unknown> }>(sql`
      SELECT id, data FROM pgboss.job WHERE name = ${confirmPullRequestQueue} AND state = 'created'`);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.data).toEqual({
      installationId: run.installationId,
      repositoryId: run.repositoryId,
      repository: run.repository,
      prNumber: run.prNumber,
    });
    expect(logsOf(setup.context, 'analyze.head_moved')).toMatchObject([
      { headSha: run.headSha, currentHeadSha: movedHeadSha, checkJobId: jobs[0]!.id },
    ]);
  });
});
