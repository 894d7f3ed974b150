import { eq, sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { createGitHubApp } from '../../src/github/app.ts';
import { findings, installations, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { previewQueueOptions, type PreviewJobData } from '../../src/jobs/preview.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createGitRepository, type GitRepository } from '../../src/demo/git-repository.ts';
import { createTestContext, type TestContext } from './context.ts';

/**
 * A test context for previews. A fake GitHub serves `octo/demo` from a git repository whose
 * head commit contains the files in `head`, with pull request 1 open at that commit. The
 * database has the installation and one completed run of pull request 1. The platform's models
 * are a fake Groq and, when given a key, a fake Gemini, and a failed model call is not retried.
 */

export const appId = '4712';
export const installationId = 78;
export const repositoryId = 556;
export const prNumber = 1;

export interface PreviewTestContext {
  context: TestContext;
  github: FakeGitHub;
  repository: GitRepository;
  groq: FakeGroq;
  /** Started in every context, but configured only when `geminiApiKey` is given. */
  gemini: FakeGemini;
  runId: string;
  /** Closes the test context and the fakes, and deletes the git repository. */
  close(): Promise<void>;
}

export async function createPreviewTestContext(options: {
  head: Record<string, string>;
  /** Platform key of the fake Groq. */
  groqApiKey: string;
  /** Platform key of the fake Gemini. Without it the context has no Gemini key. */
  geminiApiKey?: string;
  /** Maximum bytes of one GitHub response body, or the app's default when unset. */
  maxResponseBytes?: number;
  /** More environment variables of the app, such as PREVIEW_FILE_CONCURRENCY. */
  env?: Record<string, string>;
}): Promise<PreviewTestContext> {
  const groq = await startFakeGroq();
  const gemini = await startFakeGemini();
  const repository = await createGitRepository({ base: { 'README.md': '# x\n' }, head: options.head });
  const keys = generateAppKeyPair();
  const github = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  github.setInstallation({ id: installationId, account: { login: 'octo', id: 1, type: 'User' } });
  github.addRepository({ owner: 'octo', repo: 'demo', id: repositoryId, gitDir: repository.dir });
  // The preview reads the pull request before its first model call and cancels itself when
  // GitHub's head commit is not the run's.
  github.addPullRequest({
    owner: 'octo',
    repo: 'demo',
    number: prNumber,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: 'feature',
    title: 'Change demo',
  });

  const context = await createTestContext({
    GROQ_API_KEY: options.groqApiKey,
    GROQ_BASE_URL: groq.url,
    // Own Gemini keys call the fake too when no platform Gemini key is set.
    GEMINI_BASE_URL: gemini.url,
    ...(options.geminiApiKey === undefined ? {} : { GEMINI_API_KEY: options.geminiApiKey }),
    LLM_MAX_RETRIES: '0',
    ...options.env,
  });
  context.github = createGitHubApp({
    appId,
    privateKey: keys.privateKeyPem,
    baseUrl: github.url,
    logger: context.logger,
    maxResponseBytes: options.maxResponseBytes,
  });

  await context.db.insert(installations).values({
    id: installationId,
    accountLogin: 'octo',
    accountId: 1,
    accountType: 'User',
  });
  const [run] = await context.db
    .insert(prRuns)
    .values(completedRunValues(repository, prNumber, 'feature'))
    .returning();

  return {
    context,
    github,
    repository,
    groq,
    gemini,
    runId: run!.id,
    async close() {
      await context.close();
      await Promise.all([github.close(), groq.close(), gemini.close()]);
      await repository.cleanup();
    },
  };
}

/** Returns the columns of a completed run of pull request `number` of octo/demo at the head commit. */
export function completedRunValues(repository: GitRepository, number: number, headRef: string) {
  return {
    installationId,
    repositoryId,
    repository: 'octo/demo',
    prNumber: number,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef,
    headRepository: 'octo/demo',
    status: 'completed' as const,
  };
}

/** Two files with a `console.log` call on line 2, for `head` and insertConsoleLogFindings. */
export const consoleLogFiles = {
  'src/a.ts': "export const a = 1;\nconsole.log('a', a);\n",
  'src/b.ts': "export const b = 2;\nconsole.log('b', b);\n",
};

/** The files of `consoleLogFiles` without their `console.log` call, as a model fixes them. */
export const consoleLogFixes: Record<string, string> = {
  'src/a.ts': 'export const a = 1;\n',
  'src/b.ts': 'export const b = 2;\n',
};

/** Inserts one `debug/console-log` warning on line 2 of each path and returns the finding ids. */
export async function insertConsoleLogFindings(context: TestContext, runId: string, paths: string[]) {
  return context.db
    .insert(findings)
    .values(
      paths.map((path) => ({
        runId,
        path,
        startLine: 2,
        endLine: 2,
        ruleId: 'debug/console-log',
        severity: 'warning' as const,
        message: 'Remove the console.log call.',
        fingerprint: `fp-${path}`,
      })),
    )
    .returning({ id: findings.id });
}

/** Creates a patch request of `userId` for every finding of the run and returns its id. */
export async function createPatchRequestForRun(context: TestContext, runId: string, userId: string) {
  const selected = await context.db.select({ id: findings.id }).from(findings).where(eq(findings.runId, runId));
  const created = await createPatchRequest(context.db, context.boss, {
    runId,
    userId,
    findingIds: selected.map((row) => row.id),
  });
  if (!created.ok) throw new Error('patch request not created');
  if (!created.created) throw new Error(`patch request ${created.id} for these findings is still active`);
  return created.id;
}

/**
 * Takes the patch request's queued job as a worker would on its last attempt, and returns what
 * pg-boss passes to the handler then.
 */
export async function takeAsLastAttempt(
  context: TestContext,
  patchRequestId: string,
): Promise<PgBoss.JobWithMetadata<PreviewJobData>> {
  const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
  const id = request!.previewJobId!;
  const { retryLimit } = previewQueueOptions;
  await context.db.execute(sql`
    UPDATE pgboss.job SET state = 'active', started_on = now(), retry_count = ${retryLimit}
    WHERE id = ${id}
  `);
  return {
    id,
    name: 'preview',
    data: { patchRequestId },
    retryCount: retryLimit,
    retryLimit,
  } as unknown as PgBoss.JobWithMetadata<PreviewJobData>;
}

/** Returns the path of the first `<file path="...">` element in a prompt. */
export function pathInPrompt(text: string): string {
  return /<file[^>]* path="([^"]+)"/.exec(text)![1]!;
}

/** Resets the model fakes and makes each reply to a file prompt with `fixed[path]`. */
export function answerWithFixedFiles(
  fixed: Record<string, string>,
  groq: FakeGroq,
  gemini: FakeGemini,
): void {
  groq.reset();
  gemini.reset();
  const answer = (text: string) => ({ text: fixed[pathInPrompt(text)]! });
  groq.setHandler((request) => answer(request.messages.at(-1)!.content));
  gemini.setHandler((request) => answer(request.userText));
}
