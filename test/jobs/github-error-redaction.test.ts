// GitHub error bodies that echo credentials, read through the real Octokit from the fake GitHub,
// leave no credential in the log, in pg-boss's job output or in the stored errors.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings, patchFiles, patchRequests, prRuns, users } from '../../src/db/schema/index.ts';
import { handlePreviewJob } from '../../src/jobs/preview.ts';
import { reportQueue } from '../../src/jobs/report.ts';
import { startWorkers } from '../../src/jobs/workers.ts';
import type { TestContext } from '../helpers/context.ts';
import {
  createPatchRequestForRun,
  createPreviewTestContext,
  takeAsLastAttempt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';
import { waitFor } from '../helpers/process.ts';

const installationToken = 'ghs_16C7e42F292c6912E7710c838347Ae178B4a';
const personalToken = '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';
const oauthToken = 'gho_16C7e42F292c6912E7710c838347Ae178B4a';
const userToken = 'ghu_16C7e42F292c6912E7710c838347Ae178B4a';
const refreshToken = 'ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498';
const fineGrainedToken = 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW';
const queryToken = 'not-a-github-shape-0123456789';
const headerToken = 'Zm9vOmJhcg';
const tokens = [
  installationToken,
  personalToken,
  oauthToken,
  userToken,
  refreshToken,
  fineGrainedToken,
  queryToken,
  headerToken,
];

/** A body as a proxy in front of GitHub might return it, echoing the request's credentials. */
const echoingBody = {
  message:
    `Upstream failed for GET /repos/octo/demo/contents/src/key.ts?ref=main&token=${installationToken} ` +
    `with headers {Authorization: token ${installationToken}} and "authorization": "Basic ${headerToken}"; ` +
    `cached credentials ${personalToken} ${oauthToken} ${userToken} ${refreshToken} ${fineGrainedToken}; ` +
    `callback ?access_token=${queryToken}&state=1`,
};

let setup: PreviewTestContext;
let context: TestContext;
let runId: string;
let nextLogin = 1;

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: { 'src/key.ts': 'const apiKey = "x";\n' },
    groqApiKey: 'gsk_platform_redaction_test',
  });
  ({ context, runId } = setup);
  await context.db.insert(findings).values({
    runId,
    path: 'src/key.ts',
    startLine: 1,
    endLine: 1,
    ruleId: 'secret/hardcoded-credential',
    severity: 'error',
    message: 'Hard-coded credential.',
    fingerprint: 'fp-key',
  });
});

afterAll(async () => {
  await setup?.close();
});

/** Makes the next `count` reads of the file's contents fail with `status` and the echoing body. */
function failContentReads(status: number, count: number) {
  for (let index = 0; index < count; index++) {
    setup.github.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/contents/*path',
      status,
      body: echoingBody,
    });
  }
}

async function newPatchRequest(): Promise<string> {
  const [user] = await context.db
    .insert(users)
    .values({ login: `redaction-user-${nextLogin++}`, plan: 'pro', tokenLimit: 100_000 })
    .returning();
  return createPatchRequestForRun(context, runId, user!.id);
}

function leakedTokens(text: string): string[] {
  return tokens.filter((token) => text.includes(token));
}

async function jobOutput(jobId: string): Promise<{ state: string; output: unknown }> {
  const [row] = await context.database.sql<{ state: string; output: unknown }[]>`
    SELECT state, output FROM pgboss.job WHERE id = ${jobId}`;
  return row!;
}

describe('GitHub errors with credentials in the body', () => {
  it('stores a failed preview without them', async () => {
    // Octokit retries a server error 3 times.
    failContentReads(500, 4);
    const patchRequestId = await newPatchRequest();
    const job = await takeAsLastAttempt(context, patchRequestId);

    const thrown = await handlePreviewJob(context, job).catch((error: unknown) => error as Error);

    expect(thrown).toBeInstanceOf(Error);
    expect(thrown!.message).toContain('token=[redacted]');
    expect(leakedTokens(thrown!.message)).toEqual([]);
    const failure = context.logs.find((line) => line.event === 'job.preview.failed' && line.jobId === job.id);
    expect(failure).toBeDefined();
    const err = failure!.err as { message: string; stack: string; status: number };
    expect(err.status).toBe(500);
    expect(err.message).toContain('Authorization: token [redacted]');
    expect(err.message).toContain('"authorization": "Basic [redacted]"');
    expect(err.message).toContain('access_token=[redacted]');
    expect(leakedTokens(JSON.stringify(failure))).toEqual([]);
    expect(err.stack).toContain('[redacted]');

    const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('failed');
    expect(request!.error).toContain('token=[redacted]');
    expect(leakedTokens(request!.error!)).toEqual([]);
    const files = await context.db.select().from(patchFiles).where(eq(patchFiles.patchRequestId, patchRequestId));
    expect(files).toHaveLength(1);
    expect(leakedTokens(files[0]!.error!)).toEqual([]);
  });

  it('leaves them out of the log and job output of workers', async () => {
    const workers = await startWorkers(context, context.database.url);
    try {
      // A preview job whose read fails after Octokit's retries, and a report job whose check
      // run GitHub rejects without a retry. The report job throws Octokit's RequestError itself,
      // whose fields carry the response body.
      failContentReads(500, 4);
      setup.github.queueResponse({
        method: 'POST',
        path: '/repos/:owner/:repo/check-runs',
        status: 422,
        body: echoingBody,
      });
      const patchRequestId = await newPatchRequest();
      const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
      const reportJobId = (await context.boss.send(reportQueue, { runId }))!;
      await context.db.update(prRuns).set({ reportJobId }).where(eq(prRuns.id, runId));

      // The report job fails first, and pg-boss retries it after 10 s, so it is read first.
      for (const jobId of [reportJobId, request!.previewJobId!]) {
        const { state, output } = await waitFor(
          async () => {
            const row = await jobOutput(jobId);
            return row.state === 'retry' ? row : null;
          },
          { timeoutMs: 40_000, describe: () => `job ${jobId} to wait for its retry` },
        );
        expect(state).toBe('retry');
        const stored = JSON.stringify(output);
        expect(stored, jobId).toContain('[redacted]');
        expect(leakedTokens(stored), jobId).toEqual([]);
        expect(stored, jobId).not.toContain('Upstream failed for GET /repos/octo/demo/contents/src/key.ts?ref=main&token=ghs');
      }
    } finally {
      await context.boss.stop({ graceful: false, wait: true });
      await workers.close();
    }

    for (const event of ['job.preview.failed', 'job.report.failed']) {
      const lines = context.logs.filter((line) => line.event === event);
      expect(lines.length, event).toBeGreaterThan(0);
    }
    expect(leakedTokens(JSON.stringify(context.logs))).toEqual([]);
  }, 60_000);
});
