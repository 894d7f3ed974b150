// Previewing when GitHub returns a 200 response to a file read that lacks or mistypes a field.
// The preview job fails like after a server error, so pg-boss retries it, and its last attempt
// stores an error on the file that names the request and the field. A response over the size
// limit fails the file at once instead. No model call is made.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runPreview } from '../../src/autofix/preview.ts';
import { patchFiles, patchRequests, users } from '../../src/db/schema/index.ts';
import { UnexpectedGitHubAnswerError } from '../../src/github/github-response.ts';
import { handlePreviewJob, previewQueue, type PreviewJobData } from '../../src/jobs/preview.ts';
import { logsOf, type TestContext } from '../helpers/context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import {
  answerWithFixedFiles,
  consoleLogFiles,
  consoleLogFixes,
  createPatchRequestForRun,
  createPreviewTestContext,
  insertConsoleLogFindings,
  takeAsLastAttempt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const contentsPath = '/repos/octo/demo/contents/src/a.ts';
/** Matches the contents request of src/a.ts, whose path Octokit sends as `src%2Fa.ts`. */
const contentsPattern = /^\/repos\/octo\/demo\/contents\/src(\/|%2F)a\.ts$/i;
const htmlPage = {
  headers: { 'content-type': 'text/html' },
  body: '<html><body>Service Unavailable</body></html>',
};
const htmlProblem = 'body: Invalid input: expected object, received string';
/** The app's limit on one GitHub response in these tests, far above the fake's responses. */
const maxResponseBytes = 64 * 1024;

let setup: PreviewTestContext;
let context: TestContext;

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: { 'src/a.ts': consoleLogFiles['src/a.ts'] },
    groqApiKey: 'gsk_platform_invalid_response_test',
    maxResponseBytes,
  });
  context = setup.context;
  await insertConsoleLogFindings(context, setup.runId, ['src/a.ts']);
});

beforeEach(() => {
  answerWithFixedFiles(consoleLogFixes, setup.groq, setup.gemini);
});

afterAll(async () => {
  await setup?.close();
});

async function newPatchRequest(): Promise<string> {
  const [owner] = await context.db
    .insert(users)
    .values({ login: `user-${Math.random().toString(36).slice(2, 9)}`, plan: 'pro', tokenLimit: 100_000 })
    .returning();
  return createPatchRequestForRun(context, setup.runId, owner!.id);
}

async function storedRequest(patchRequestId: string) {
  const [request] = await context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, patchRequestId));
  return request!;
}

async function storedFile(patchRequestId: string) {
  const [file] = await context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId));
  return file!;
}

function modelCalls(): number {
  return setup.groq.requests.filter((request) => request.path.endsWith('/chat/completions')).length;
}

describe('preview, invalid file read', () => {
  it('fails the file on the last attempt', async () => {
    const patchRequestId = await newPatchRequest();
    setup.github.queueResponse({ method: 'GET', path: contentsPattern, status: 200, ...htmlPage });
    const failedBefore = logsOf(context, 'job.preview.failed').length;
    const job = await takeAsLastAttempt(context, patchRequestId);

    const error = await handlePreviewJob(context, job).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe(htmlProblem);
    const message =
      `Preview failed: GitHub returned an invalid response (status 200) to GET ${contentsPath}: ` +
      `${htmlProblem}. GitHub, or a proxy between this server and GITHUB_API_URL, may be ` +
      'failing. Once it responds normally, regenerate the failed files or request a new preview.';
    const file = await storedFile(patchRequestId);
    expect(file.status).toBe('failed');
    expect(file.error).toBe(message);
    expect(file.proposedText).toBeNull();
    const request = await storedRequest(patchRequestId);
    expect(request.status).toBe('failed');
    expect(request.error).toBe(message);
    expect(modelCalls()).toBe(0);
    const failed = logsOf(context, 'job.preview.failed').slice(failedBefore);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.finalAttempt).toBe(true);
    expect(failed[0]!.err).toMatchObject({ type: 'UnexpectedGitHubAnswerError', message: htmlProblem });
    expect((failed[0]!.err as { request?: unknown }).request).toBe(`GET ${contentsPath}`);
  });

  it('previews the file on the next attempt', async () => {
    const patchRequestId = await newPatchRequest();
    setup.github.queueResponse({
      method: 'GET',
      path: contentsPattern,
      status: 200,
      body: { type: 'file', size: '39', sha: 'a'.repeat(40), encoding: 'base64', content: '' },
    });

    const error = await runPreview(context, patchRequestId, 0, context.logger).catch(
      (caught: unknown) => caught,
    );

    expect(error).toBeInstanceOf(UnexpectedGitHubAnswerError);
    expect((error as UnexpectedGitHubAnswerError).problem).toBe(
      'size: Invalid input: expected number, received string',
    );
    const waiting = await storedFile(patchRequestId);
    expect(waiting.status).not.toBe('failed');
    expect(waiting.error).toBeNull();
    expect(modelCalls()).toBe(0);

    const outcome = await runPreview(context, patchRequestId, 1, context.logger);

    expect(outcome.status).toBe('ready');
    const ready = await storedFile(patchRequestId);
    expect(ready.status).toBe('ready');
    expect(ready.originalText).toBe(consoleLogFiles['src/a.ts']);
    expect(ready.proposedText).toBe(consoleLogFixes['src/a.ts']);
    expect(modelCalls()).toBe(1);
  });
});

describe('preview, oversized file read', () => {
  it('fails the file at once', async () => {
    const patchRequestId = await newPatchRequest();
    const body = Buffer.alloc(maxResponseBytes + 1, ' ');
    setup.github.queueResponse({ method: 'GET', path: contentsPattern, status: 200, body });
    const readsBefore = setup.github.requests.filter((request) => contentsPattern.test(request.path)).length;
    const tooLargeBefore = logsOf(context, 'preview.file_response_too_large').length;
    const { previewJobId } = await storedRequest(patchRequestId);

    await runDueJob<PreviewJobData>(context, previewQueue, previewJobId!, (job) => handlePreviewJob(context, job));

    const job = await context.boss.getJobById(previewQueue, previewJobId!);
    expect(job?.state).toBe('completed');
    expect(job?.retryCount).toBe(0);
    const reads = setup.github.requests.filter((request) => contentsPattern.test(request.path)).length;
    expect(reads - readsBefore).toBe(1);
    const message =
      `Preview of src/a.ts failed: GitHub returned an invalid response (status 200) to GET ` +
      `${contentsPath}: the response is larger than the limit of 65536 bytes. A file within ` +
      'PREVIEW_MAX_FILE_BYTES needs no response this large, so GitHub, or a proxy between this ' +
      'server and GITHUB_API_URL, may be failing. Once it responds normally, regenerate this file.';
    const file = await storedFile(patchRequestId);
    expect(file.status).toBe('failed');
    expect(file.error).toBe(message);
    const request = await storedRequest(patchRequestId);
    expect(request.status).toBe('failed');
    expect(request.error).toBe(message);
    expect(request.completedAt).toBeInstanceOf(Date);
    expect(modelCalls()).toBe(0);
    const logged = logsOf(context, 'preview.file_response_too_large').slice(tooLargeBefore);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.path).toBe('src/a.ts');
    expect(logged[0]!.err).toMatchObject({
      type: 'GitHubResponseTooLargeError',
      request: `GET ${contentsPath}`,
    });
  });
});
