import { installations, prRuns } from '../../src/db/schema/index.ts';
import { owner, pullNumber, repo, startHarness, type Harness } from '../github/harness.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';

/** A test context whose GitHub App is a harness serving the pull request of `files`. */
export interface AnalyzeTestContext {
  context: TestContext;
  harness: Harness;
  /** Creates a queued run; each gets its own repository id, so the unique key never clashes. */
  createRun(): Promise<typeof prRuns.$inferSelect>;
  close(): Promise<void>;
}

export async function createAnalyzeTestContext(
  files: Parameters<typeof startHarness>[0],
): Promise<AnalyzeTestContext> {
  const harness = await startHarness(files);
  const context = await createTestContext();
  context.github = harness.app;
  await context.db.insert(installations).values({
    id: harness.installationId,
    accountLogin: owner,
    accountId: 1,
    accountType: 'Organization',
  });
  let nextRepositoryId = 1;
  return {
    context,
    harness,
    async createRun() {
      const [run] = await context.db
        .insert(prRuns)
        .values({
          installationId: harness.installationId,
          repositoryId: nextRepositoryId++,
          repository: `${owner}/${repo}`,
          prNumber: pullNumber,
          baseSha: harness.repository.baseSha,
          headSha: harness.repository.headSha,
          headRef: 'feature',
          headRepository: `${owner}/${repo}`,
        })
        .returning();
      return run!;
    },
    async close() {
      await context.close();
      await harness.close();
    },
  };
}

/** Runs analyze job `jobId` of `context` as a worker does, and returns what it threw, or null. */
export async function attemptAnalyzeJob(context: TestContext, jobId: string): Promise<unknown> {
  return runDueJob<AnalyzeJobData>(context, analyzeQueue, jobId, (job) => handleAnalyzeJob(context, job)).then(
    () => null,
    (error: unknown) => error,
  );
}
