import { randomUUID } from 'node:crypto';
import { and, count, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { excerptMaskVersion } from '../../src/analysis/mask-version.ts';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { maxGitHubResponseBytes } from '../../src/github/responses.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { analyzeRun, failRun } from '../../src/runs/analyze-run.ts';
import type { Harness } from '../github/harness.ts';
import type { TestContext } from '../helpers/context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { createAnalyzeTestContext, type AnalyzeTestContext } from './analyze-context.ts';

const filesPattern = '/repos/:owner/:repo/pulls/:pull_number/files';
const secret = 'sk_live_51HqLyjWDarjtT1zdp7dcQzX';

let setup: AnalyzeTestContext;
let context: TestContext;
let harness: Harness;
let createRun: AnalyzeTestContext['createRun'];

beforeAll(async () => {
  setup = await createAnalyzeTestContext({ base: { 'README.md': '# x\n' }, head: { 'README.md': '# y\n' } });
  ({ context, harness, createRun } = setup);
});

afterAll(async () => {
  await setup?.close();
});

/** Makes the next "list pull request files" call return one added file with `patch`. */
function queueChangedFile(filename: string, patch: string) {
  harness.fake.queueResponse({
    method: 'GET',
    path: filesPattern,
    status: 200,
    body: [
      {
        sha: 'c'.repeat(40),
        filename,
        status: 'added',
        additions: patch.split('\n').length - 1,
        deletions: 0,
        changes: patch.split('\n').length - 1,
        patch,
      },
    ],
  });
}

async function runById(runId: string) {
  const [run] = await context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

describe('analyzeRun', () => {
  it('stores findings of lines that contain NUL', async () => {
    const run = await createRun();
    queueChangedFile('src/app.ts', "@@ -0,0 +1,2 @@\n+console.log('a\0b');\n+const x = 1;");

    const outcome = await analyzeRun(context, run.id, context.logger);

    expect(outcome).toEqual({ status: 'completed', findings: 1, files: 1 });
    expect((await runById(run.id)).status).toBe('completed');
    const rows = await context.db.select().from(findings).where(eq(findings.runId, run.id));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.ruleId).toBe('debug/console-log');
    expect(rows[0]!.excerpt).toBe("console.log('ab');");
  });

  it('stores the current mask version', async () => {
    const run = await createRun();
    queueChangedFile('src/app.ts', '@@ -0,0 +1 @@\n+fetch("https://h/x?password=hunter2"); debugger;');

    await analyzeRun(context, run.id, context.logger);

    const rows = await context.db.select().from(findings).where(eq(findings.runId, run.id));
    expect(rows.map((row) => [row.ruleId, row.excerpt, row.maskVersion])).toEqual([
      ['debug/debugger', 'fetch("https://h/x?password=h*****2"); debugger;', excerptMaskVersion],
    ]);
  });

  it('counts files left out of the list', async () => {
    const run = await createRun();
    harness.fake.queueResponse({ method: 'GET', path: filesPattern, status: 200, body: [] });

    const outcome = await analyzeRun(context, run.id, context.logger);

    expect(outcome).toEqual({ status: 'completed', findings: 0, files: 0 });
    const stored = await runById(run.id);
    expect(stored.unlistedFiles).toBe(1);
    expect(stored.uncheckedFiles).toEqual([]);
  });

  it('stores 7000 findings of one run', async () => {
    const run = await createRun();
    const lines = Array.from({ length: 7000 }, (_, index) => `+console.log(${index});`);
    queueChangedFile('src/noisy.ts', ['@@ -0,0 +1,7000 @@', ...lines].join('\n'));

    const outcome = await analyzeRun(context, run.id, context.logger);

    expect(outcome).toEqual({ status: 'completed', findings: 7000, files: 1 });
    expect((await runById(run.id)).status).toBe('completed');
    const [stored] = await context.db
      .select({ value: count() })
      .from(findings)
      .where(eq(findings.runId, run.id));
    expect(stored!.value).toBe(7000);
  });
});

describe('analyzeRun past the findings limit', () => {
  it('stores 10000 findings and counts the rest', async () => {
    const run = await createRun();
    const lines = Array.from({ length: 10_005 }, (_, index) => `+console.log(${index});`);
    lines[10_004] = `+const apiKey = "${secret}";`;
    queueChangedFile('src/noisy.ts', ['@@ -0,0 +1,10005 @@', ...lines].join('\n'));

    const outcome = await analyzeRun(context, run.id, context.logger);

    expect(outcome).toEqual({ status: 'completed', findings: 10_000, files: 1 });
    expect((await runById(run.id)).omittedFindings).toBe(5);
    const [error] = await context.db
      .select({ line: findings.startLine })
      .from(findings)
      .where(and(eq(findings.runId, run.id), eq(findings.severity, 'error')));
    expect(error?.line).toBe(10_005);
  });
});

describe('failRun', () => {
  it('stores the database error without the query parameters', async () => {
    const run = await createRun();
    const queryError = await context.db
      .insert(findings)
      .values({
        runId: run.id,
        path: 'src/config.ts',
        startLine: 1,
        endLine: 1,
        ruleId: 'secret/hardcoded-credential',
        severity: 'error',
        message: 'Hard-coded credential.',
        excerpt: `const key = "${secret}";\0`,
        fingerprint: 'fp-nul',
      })
      .catch((error: unknown) => error);
    expect(queryError).toBeInstanceOf(Error);
    expect((queryError as Error).message).toContain(secret);

    await failRun(context.db, { runId: run.id, jobId: randomUUID() }, queryError);

    const stored = await runById(run.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(
      'Analysis failed: Database query failed: invalid byte sequence for encoding "UTF8": 0x00',
    );
    expect(stored.completedAt).toBeInstanceOf(Date);
  });

  it('names the GitHub request that failed', async () => {
    const run = await createRun();
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/pulls/:pull_number',
      status: 404,
      body: { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' },
    });
    const notFound = await analyzeRun(context, run.id, context.logger).catch((error: unknown) => error);
    expect((notFound as { status?: unknown }).status).toBe(404);

    await failRun(context.db, { runId: run.id, jobId: randomUUID() }, notFound);

    const stored = await runById(run.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(
      'Analysis failed: GitHub returned 404 for GET /repos/octo-org/widgets/pulls/7: Not Found. ' +
        "GitHub returns 404 when the repository or pull request does not exist or the app's " +
        'installation cannot read it. Check the repositories that the installation can access, ' +
        'then push a commit or redeliver the event.',
    );
  });

  it('names a GitHub response over the limit', async () => {
    const run = await createRun();
    const pullRequests = () =>
      harness.fake.requests.filter((request) => request.path === '/repos/octo-org/widgets/pulls/7');
    const requestsBefore = pullRequests().length;
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/pulls/:pull_number',
      status: 200,
      body: Buffer.alloc(maxGitHubResponseBytes + 1, ' '),
    });
    const tooLarge = await analyzeRun(context, run.id, context.logger).catch((error: unknown) => error);

    await failRun(context.db, { runId: run.id, jobId: randomUUID() }, tooLarge);

    const stored = await runById(run.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(
      'Analysis failed: GitHub returned an invalid response (status 200) to GET ' +
        '/repos/octo-org/widgets/pulls/7: the response is larger than the limit of 67108864 ' +
        'bytes (64 MiB).',
    );
    expect(pullRequests().length - requestsBefore).toBe(1);
  });

  it('fails an invalid repository name for good', async () => {
    const run = await createRun();
    await context.db.update(prRuns).set({ repository: '../..' }).where(eq(prRuns.id, run.id));
    const jobId = (await context.boss.send(analyzeQueue, { runId: run.id }))!;
    await context.db.update(prRuns).set({ analyzeJobId: jobId }).where(eq(prRuns.id, run.id));
    const requestsBefore = harness.fake.requests.length;

    await runDueJob<AnalyzeJobData>(context, analyzeQueue, jobId, (job) => handleAnalyzeJob(context, job));

    const stored = await runById(run.id);
    expect(stored.status).toBe('failed');
    expect(stored.error).toBe(
      'Analysis failed: Invalid repository name "../..": GitHub does not allow "." or ".." as ' +
        'OWNER or NAME, so no request is sent for it.',
    );
    expect(stored.completedAt).toBeInstanceOf(Date);
    const job = await context.boss.getJobById(analyzeQueue, jobId);
    expect(job!.state).toBe('completed');
    expect(job!.retryCount).toBe(0);
    expect(harness.fake.requests.slice(requestsBefore).map((request) => request.path)).not.toContainEqual(
      expect.stringContaining('/pulls/'),
    );
    const failures = context.logs.filter((line) => line.event === 'job.analyze.failed' && line.runId === run.id);
    expect(failures).toHaveLength(1);
    expect(failures[0]!.finalAttempt).toBe(true);
    expect(failures[0]!.msg).toBe("analysis failed: the run's stored repository name is invalid");
  });

  it('caps a long message', async () => {
    const run = await createRun();

    await failRun(context.db, { runId: run.id, jobId: randomUUID() }, new Error('x'.repeat(50_000)));

    const stored = await runById(run.id);
    expect(stored.error!.length).toBeLessThanOrEqual(2100);
    expect(stored.error!.startsWith('Analysis failed: xxx')).toBe(true);
  });

  it('keeps a completed run', async () => {
    const run = await createRun();
    const jobId = randomUUID();
    await context.db
      .update(prRuns)
      .set({ status: 'completed', analyzeJobId: jobId })
      .where(eq(prRuns.id, run.id));

    await failRun(context.db, { runId: run.id, jobId }, new Error('failed after the commit'));

    const kept = await runById(run.id);
    expect(kept.status).toBe('completed');
    expect(kept.error).toBeNull();
  });

  it('keeps run of newer job', async () => {
    const run = await createRun();
    const newerJobId = randomUUID();
    await context.db
      .update(prRuns)
      .set({ status: 'queued', analyzeJobId: newerJobId })
      .where(eq(prRuns.id, run.id));

    await failRun(context.db, { runId: run.id, jobId: randomUUID() }, new Error('stale attempt'));

    const untouched = await runById(run.id);
    expect(untouched.status).toBe('queued');
    expect(untouched.error).toBeNull();

    await failRun(context.db, { runId: run.id, jobId: newerJobId }, new Error('current attempt'));

    const failed = await runById(run.id);
    expect(failed.status).toBe('failed');
    expect(failed.error).toBe('Analysis failed: current attempt');
  });
});
