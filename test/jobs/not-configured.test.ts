import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installations, prRuns } from '../../src/db/schema/index.ts';
import { handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext();
});
afterAll(async () => {
  await context.close();
});

describe('analyze job without GitHub App credentials', () => {
  it('fails the run on the first attempt', async () => {
    await context.db
      .insert(installations)
      .values({ id: 61, accountLogin: 'o', accountId: 1, accountType: 'User' });
    const [run] = await context.db
      .insert(prRuns)
      .values({
        installationId: 61,
        repositoryId: 1,
        repository: 'o/r',
        prNumber: 1,
        baseSha: 'a'.repeat(40),
        headSha: 'b'.repeat(40),
        headRef: 'feature',
        headRepository: 'o/r',
      })
      .returning();
    const job = {
      id: randomUUID(),
      name: 'analyze',
      data: { runId: run!.id },
      retryCount: 0,
      retryLimit: 4,
    } as unknown as PgBoss.JobWithMetadata<AnalyzeJobData>;

    await expect(handleAnalyzeJob(context, job)).resolves.toBeUndefined();

    const [stored] = await context.db.select().from(prRuns).where(eq(prRuns.id, run!.id));
    expect(stored!.status).toBe('failed');
    expect(stored!.error).toContain('set APP_ID and PRIVATE_KEY');
    expect(stored!.completedAt).toBeInstanceOf(Date);
    expect(context.logs.some((line) => line.event === 'job.analyze.not_configured')).toBe(true);
  });
});
