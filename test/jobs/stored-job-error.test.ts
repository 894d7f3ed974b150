// The error that pg-boss stores as a failed job's output, as startWorkers' workers hand it over.
// It has the fields of the job's log line, with the method and path of the failed GitHub
// request. It has no request headers, query string, token or response body.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { analyzeQueue, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { reportQueue, type ReportJobData } from '../../src/jobs/report.ts';
import { startWorkers } from '../../src/jobs/workers.ts';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertRun,
  insertWarnedRun,
  prNumber,
  repository,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

let setup: GitHubTestContext;
let workers: { close(): Promise<void> } | undefined;

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
  workers = await startWorkers(setup.context, setup.context.database.url);
});

afterAll(async () => {
  if (workers) {
    // startWorkers' close runs after pg-boss has stopped, as the service does it.
    await setup.context.boss.stop({ graceful: false, wait: true });
    await workers.close();
  }
  await setup?.close();
});

/** Waits until the worker has failed job `jobId` of `queue`, and returns its stored output. */
async function failedOutput(queue: string, jobId: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const job = await setup.context.boss.getJobById(queue, jobId);
    if (job?.state === 'failed') break;
    expect(Date.now()).toBeLessThan(deadline);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const [row] = await setup.context.database.sql<{ output: Record<string, unknown> }[]>`
    SELECT output FROM pgboss.job WHERE name = ${queue} AND id = ${jobId}`;
  return row!.output;
}

/**
 * Checks that the stored output has the fields of the job's `event` log line and no others,
 * with `expected` among them, and none of the request's headers, query string or token.
 */
function expectLoggedFields(
  output: Record<string, unknown>,
  logged: { event: string; jobId: string },
  expected: { status: number; request: string },
) {
  const [line] = logsOf(setup.context, logged.event, { jobId: logged.jobId });
  const err = line!.err as Record<string, unknown>;
  expect(err.request).toBe(expected.request);
  expect(Object.keys(output).sort()).toEqual(['message', 'name', 'request', 'stack', 'status', 'type']);
  expect(output.name).toBe('JobError');
  expect(output.type).toBe('HttpError');
  expect(output.message).toBe(err.message);
  expect(output.stack).toBe(err.stack);
  expect(output.status).toBe(expected.status);
  expect(output.request).toBe(expected.request);
  const text = JSON.stringify(output);
  expect(text).not.toMatch(/authorization/i);
  expect(text).not.toMatch(/ghs_/);
  expect(text).not.toContain('?');
  expect(text).not.toContain('per_page');
}

describe('stored job error', () => {
  it('names the request of an analysis', async () => {
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
      status: 'queued',
    });
    const filesPath = `/repos/${repository}/pulls/${prNumber}/files`;
    setup.fake.queueResponse({ method: 'GET', path: filesPath, status: 404 });
    const data: AnalyzeJobData = { runId: run.id };
    const jobId = (await setup.context.boss.send(analyzeQueue, data, { retryLimit: 0 }))!;
    await setup.context.db.update(prRuns).set({ analyzeJobId: jobId }).where(eq(prRuns.id, run.id));

    const output = await failedOutput(analyzeQueue, jobId);

    expectLoggedFields(
      output,
      { event: 'job.analyze.failed', jobId },
      { status: 404, request: `GET ${filesPath}` },
    );
  }, 60_000);

  it('names the request of a report', async () => {
    const run = await insertWarnedRun(setup, 1);
    const listPath = `/repos/${repository}/commits/${run.headSha}/check-runs`;
    setup.fake.queueResponse({
      method: 'GET',
      path: listPath,
      status: 403,
      body: { message: 'Resource not accessible by integration' },
    });
    const data: ReportJobData = { runId: run.id };
    const jobId = (await setup.context.boss.send(reportQueue, data, { retryLimit: 0 }))!;
    await setup.context.db.update(prRuns).set({ reportJobId: jobId }).where(eq(prRuns.id, run.id));

    // The report job throws Octokit's own error, which carries the request's headers and the
    // response, so the worker converts it.
    const output = await failedOutput(reportQueue, jobId);

    expectLoggedFields(
      output,
      { event: 'job.report.failed', jobId },
      { status: 403, request: `GET ${listPath}` },
    );
    expect(output.message).toContain('Resource not accessible by integration');
    const stored = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored[0]!.reportError).toContain(`GET ${listPath}`);
  }, 60_000);
});
