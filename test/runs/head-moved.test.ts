import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { handleConfirmPullRequestJob } from '../../src/jobs/confirm-pull-request.ts';
import {
  confirmPullRequestQueue,
  type ConfirmPullRequestJobData,
} from '../../src/jobs/confirm-pull-request-queue.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertRun,
  prNumber,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { keyedQueue } from '../helpers/jobs.ts';

let setup: GitHubTestContext;

const checks = keyedQueue<ConfirmPullRequestJobData>({
  context: () => setup.context,
  queue: confirmPullRequestQueue,
  key: () => `${repositoryId}#${prNumber}`,
  handle: handleConfirmPullRequestJob,
});

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': "export const a = 1;\nconsole.log('a', a);\n" },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterAll(async () => {
  await setup?.close();
});

describe('analyzeRun', () => {
  it('supersedes a run after a force-push back', async () => {
    // The fake's pull request head stays at the first head commit, and this run is for a later
    // one, as after a force-push back to an ancestor.
    const laterSha = await commitOnBranch(setup.git.dir, headBranch, { 'b.txt': 'b\n' });
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: laterSha,
      baseSha: setup.git.baseSha,
      status: 'queued',
    });

    const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);

    expect(outcome).toEqual({ status: 'skipped', findings: 0, files: 0 });
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('superseded');
    const head = setup.git.headSha.slice(0, 7);
    expect(stored!.error).toContain(`The pull request's head on GitHub is now ${head}, not this run's ${laterSha.slice(0, 7)}`);
    expect(stored!.error).toContain(`A run for ${head} reports instead.`);
    expect(stored!.error).not.toContain('newer');
    const listed = setup.fake.requests.filter((request) => request.path.endsWith('/files'));
    expect(listed).toHaveLength(0);

    // The queued check of the pull request creates the run for the head that the message names.
    await checks.run(await checks.queued());
    const headRuns = await setup.context.db.select().from(prRuns).where(eq(prRuns.headSha, setup.git.headSha));
    expect(headRuns.map((headRun) => headRun.status)).toEqual(['queued']);
  });
});
