// Analyzing when the service cannot use GitHub: GITHUB_API_URL refuses the connection, or
// GitHub rejects the app's JSON web token because the private key is not the app's. A refused
// connection is retried, and each failed attempt shows its error on the run. A rejected token
// fails the run at once with what to check.
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { prRuns } from '../../src/db/schema/index.ts';
import { generateAppKeyPair } from '../../src/demo/fakes/github.ts';
import { createGitHubApp } from '../../src/github/app.ts';
import { analyzeQueue, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { createLogger } from '../../src/logger.ts';
import { appId } from '../github/harness.ts';
import { logsOf } from '../helpers/context.ts';
import { attemptAnalyzeJob, createAnalyzeTestContext, type AnalyzeTestContext } from './analyze-context.ts';

let setup: AnalyzeTestContext;

beforeAll(async () => {
  setup = await createAnalyzeTestContext({
    base: { 'README.md': '# Widgets\n' },
    head: { 'README.md': '# Widgets\n', 'src/app.ts': "console.log('ready');\n" },
  });
});

afterEach(() => {
  setup.context.github = setup.harness.app;
});

afterAll(async () => {
  await setup?.close();
});

/** Creates a run with a queued analyze job of `retryLimit` retries, as a delivery does. */
async function queuedRun(retryLimit: number) {
  const run = await setup.createRun();
  const data: AnalyzeJobData = { runId: run.id };
  const jobId = (await setup.context.boss.send(analyzeQueue, data, { retryLimit }))!;
  await setup.context.db.update(prRuns).set({ analyzeJobId: jobId }).where(eq(prRuns.id, run.id));
  return { runId: run.id, jobId };
}

/** Runs analyze job `jobId` as a worker does, and returns what it threw, or null. */
function attempt(jobId: string): Promise<unknown> {
  return attemptAnalyzeJob(setup.context, jobId);
}

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

function tokenRequests(): number {
  return setup.harness.fake.requests.filter((request) => request.path.endsWith('/access_tokens')).length;
}

describe('analysis, unreachable GITHUB_API_URL', () => {
  it('shows each failed attempt on the run', async () => {
    const port = await findFreePort();
    const apiUrl = `http://127.0.0.1:${port}`;
    setup.context.github = createGitHubApp({
      appId,
      privateKey: setup.harness.privateKeyPem,
      baseUrl: apiUrl,
      logger: createLogger('silent'),
    });
    const refusedMessage =
      `GitHub sent no response to POST /app/installations/${setup.harness.installationId}/access_tokens: ` +
      `connect ECONNREFUSED 127.0.0.1:${port}: the connection to GITHUB_API_URL ${apiUrl} was ` +
      "refused. Check that GITHUB_API_URL is the URL of GitHub's REST API, such as " +
      'https://api.github.com, and that this host can reach it.';
    // Each job is queued just before its attempt, which fails the other due jobs it fetches.
    const retried = await queuedRun(4);
    expect(await attempt(retried.jobId)).toBeInstanceOf(Error);
    const last = await queuedRun(0);
    expect(await attempt(last.jobId)).toBeInstanceOf(Error);

    const waiting = await storedRun(retried.runId);
    expect(waiting.status).toBe('analyzing');
    expect(waiting.error).toBe(`Attempt 1 of 5 failed, so the analysis is retried: ${refusedMessage}`);
    expect(waiting.completedAt).toBeNull();
    const failed = await storedRun(last.runId);
    expect(failed.status).toBe('failed');
    expect(failed.error).toBe(`Analysis failed: ${refusedMessage}`);
  }, 60_000);
});

describe('analysis, rejected app key', () => {
  it('fails the run at once', async () => {
    setup.context.github = createGitHubApp({
      appId,
      privateKey: generateAppKeyPair().privateKeyPem,
      baseUrl: setup.harness.fake.url,
      logger: createLogger('silent'),
    });
    const { runId, jobId } = await queuedRun(4);
    const tokenRequestsBefore = tokenRequests();
    const failedBefore = logsOf(setup.context, 'job.analyze.failed').length;

    expect(await attempt(jobId)).toBeNull();

    const job = await setup.context.boss.getJobById(analyzeQueue, jobId);
    expect(job?.state).toBe('completed');
    expect(job?.retryCount).toBe(0);
    expect(tokenRequests() - tokenRequestsBefore).toBe(1);
    const stored = await storedRun(runId);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(
      `Analysis failed: GitHub returned 401 for POST /app/installations/${setup.harness.installationId}` +
        '/access_tokens: A JSON web token could not be decoded. GitHub rejected the JSON web ' +
        'token signed with the key of PRIVATE_KEY_PATH for APP_ID. Check that APP_ID and ' +
        'PRIVATE_KEY_PATH belong to the same GitHub App and that the key is one of the ' +
        "app's current private keys (GitHub rejects a deleted key), then restart the service " +
        'and push a commit or redeliver the event.',
    );
    const logged = logsOf(setup.context, 'job.analyze.failed').slice(failedBefore);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.finalAttempt).toBe(true);
  });
});
