import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { createGitHubApp } from '../../src/github/app.ts';
import {
  findings,
  installations,
  patchFiles,
  patchRequestFindings,
  patchRequests,
  prRuns,
  users,
} from '../../src/db/schema/index.ts';
import { analyzeQueue, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { createTestContext, type TestContext } from './context.ts';
import { examplePullRequestEvent } from './webhooks.ts';
import {
  commitOnBranch,
  createGitRepository,
  headBranch,
  type FileValue,
  type GitRepository,
} from '../../src/demo/git-repository.ts';

/**
 * A test context wired to a fake GitHub that serves one repository, `owner/repo`, with pull
 * request `prNumber` from `main` to `feature`, plus helpers that insert rows for it.
 */

export const appId = '24680';
export const owner = 'octo-org';
export const repo = 'widgets';
export const repository = `${owner}/${repo}`;
export const repositoryId = 8080;
export const prNumber = 12;

let nextInstallationId = 5000;

export interface GitHubTestContext {
  context: TestContext;
  fake: FakeGitHub;
  git: GitRepository;
  installationId: number;
  close(): Promise<void>;
}

export async function createGitHubTestContext(options: {
  base: Record<string, FileValue>;
  head: Record<string, FileValue | null>;
  env?: Record<string, string>;
  /** Maximum bytes of one GitHub response body, or the app's default when unset. */
  maxResponseBytes?: number;
}): Promise<GitHubTestContext> {
  const keys = generateAppKeyPair();
  const fake = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  const git = await createGitRepository(options);
  // A new installation id per context keeps the throttling state of tests apart.
  const installationId = nextInstallationId++;
  fake.setInstallation({
    id: installationId,
    account: { login: owner, id: 1, type: 'Organization' },
  });
  fake.addRepository({ owner, repo, id: repositoryId, gitDir: git.dir });
  fake.addPullRequest({
    owner,
    repo,
    number: prNumber,
    baseSha: git.baseSha,
    headSha: git.headSha,
    headRef: headBranch,
    title: 'Change widgets',
  });

  const context = await createTestContext({ GITHUB_URL: 'https://github.test', ...options.env });
  context.github = createGitHubApp({
    appId,
    privateKey: keys.privateKeyPem,
    baseUrl: fake.url,
    logger: context.logger,
    maxResponseBytes: options.maxResponseBytes,
  });
  return {
    context,
    fake,
    git,
    installationId,
    async close() {
      await context.close();
      await fake.close();
      await git.cleanup();
    },
  };
}

/** Adds pull request `number` of `owner/repo` to the fake, with the branches of pull request `prNumber`. */
export function addSecondPullRequest(setup: GitHubTestContext, number: number) {
  setup.fake.addPullRequest({
    owner,
    repo,
    number,
    baseSha: setup.git.baseSha,
    headSha: setup.git.headSha,
    headRef: headBranch,
    title: 'Change more widgets',
  });
}

/** Inserts a user and returns its id and a personal access token for the API. */
export async function insertUser(
  context: TestContext,
  login = `user-${randomUUID().slice(0, 8)}`,
) {
  const [user] = await context.db
    .insert(users)
    .values({ login, plan: 'pro', tokenLimit: 100_000 })
    .returning();
  const { token } = await mintApiToken(context.db, user!.id, 'tests');
  return { id: user!.id, login, token };
}

export async function insertInstallation(
  context: TestContext,
  values: { id: number; userId?: string | null; suspendedAt?: Date; deletedAt?: Date },
) {
  await context.db
    .insert(installations)
    .values({ accountLogin: owner, accountId: 1, accountType: 'Organization', ...values })
    .onConflictDoNothing();
}

export async function insertRun(
  context: TestContext,
  values: {
    installationId: number;
    headSha: string;
    baseSha: string;
    status?: 'queued' | 'completed' | 'superseded';
    headRepository?: string;
    prUpdatedAt?: Date;
  },
) {
  const [run] = await context.db
    .insert(prRuns)
    .values({
      repositoryId,
      repository,
      prNumber,
      headRef: 'feature',
      headRepository: repository,
      status: 'completed',
      ...values,
    })
    .returning();
  return run!;
}

/**
 * Replaces the runs with a queued run of the fake pull request's head, updated at 09:00, and
 * queues its analyze job. The fake serves one head commit, and a pull request has one run per
 * commit.
 */
export async function insertQueuedAnalysis(setup: GitHubTestContext) {
  await setup.context.db.delete(prRuns);
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
    status: 'queued',
    prUpdatedAt: new Date('2024-06-01T09:00:00Z'),
  });
  const data: AnalyzeJobData = { runId: run.id };
  const jobId = (await setup.context.boss.send(analyzeQueue, data))!;
  await setup.context.db.update(prRuns).set({ analyzeJobId: jobId }).where(eq(prRuns.id, run.id));
  return { run, jobId };
}

/**
 * Commits a new file on the head branch and inserts a completed run of that commit with `count`
 * warnings in src/app.ts, so that each run of a test has a head commit of its own.
 */
export async function insertWarnedRun(setup: GitHubTestContext, count: number) {
  const note = `notes/${Date.now()}-${Math.random()}.txt`;
  const headSha = await commitOnBranch(setup.git.dir, headBranch, { [note]: 'x\n' });
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha,
    baseSha: setup.git.baseSha,
  });
  const lines = Array.from({ length: count }, (_, index) => index + 1);
  await insertFindings(
    setup.context,
    run.id,
    lines.map((line) => ({ path: 'src/app.ts', line, severity: 'warning' as const })),
  );
  return run;
}

export async function insertFindings(
  context: TestContext,
  runId: string,
  rows: { path: string; line: number; severity: 'error' | 'warning' | 'notice'; ruleId?: string; message?: string }[],
) {
  if (rows.length === 0) return [];
  return context.db
    .insert(findings)
    .values(
      rows.map((row, index) => ({
        runId,
        path: row.path,
        startLine: row.line,
        endLine: row.line,
        ruleId: row.ruleId ?? 'debug/console-log',
        severity: row.severity,
        message: row.message ?? `Finding ${index} on line ${row.line}.`,
        fingerprint: `fp-${runId}-${index}`,
      })),
    )
    .returning();
}

/** Inserts a finished patch request whose files are ready with the given texts. */
export async function insertReadyPatchRequest(
  context: TestContext,
  values: {
    runId: string;
    userId: string;
    files: { path: string; originalText: string; proposedText: string }[];
    status?: 'ready' | 'partially_ready' | 'failed';
    /**
     * Adds a finding of the run for each file and selects it, as a preview made from the run's
     * findings has. Regenerating a file needs it.
     */
    withFindings?: boolean;
  },
) {
  const [request] = await context.db
    .insert(patchRequests)
    .values({
      runId: values.runId,
      userId: values.userId,
      status: values.status ?? 'ready',
      filesTotal: values.files.length,
      filesDone: values.files.length,
      completedAt: new Date(),
    })
    .returning();
  await context.db.insert(patchFiles).values(
    values.files.map((file) => ({
      patchRequestId: request!.id,
      path: file.path,
      originalText: file.originalText,
      proposedText: file.proposedText,
      diff: 'diff',
      status: 'ready' as const,
    })),
  );
  if (values.withFindings) {
    const rows = await context.db
      .insert(findings)
      .values(
        values.files.map((file) => ({
          runId: values.runId,
          path: file.path,
          startLine: 1,
          endLine: 1,
          ruleId: 'test/ready-preview',
          severity: 'warning' as const,
          message: 'Finding that the ready preview fixes.',
          fingerprint: `ready-preview:${request!.id}:${file.path}`,
        })),
      )
      .returning({ id: findings.id });
    await context.db
      .insert(patchRequestFindings)
      .values(rows.map((row) => ({ patchRequestId: request!.id, findingId: row.id })));
  }
  return request!;
}

/**
 * Returns GitHub's example `pull_request` payload for `action`, moved to the fake's pull request
 * and its head commit.
 */
export function fakePullRequestEvent(setup: GitHubTestContext, action: string): Record<string, any> {
  const payload = examplePullRequestEvent(action, {
    installationId: setup.installationId,
    repositoryId,
    repository,
    number: prNumber,
  });
  payload.pull_request.head.sha = setup.git.headSha;
  return payload;
}
