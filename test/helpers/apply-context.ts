import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { eq, ne } from 'drizzle-orm';
import { expect } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { runPreview } from '../../src/autofix/preview.ts';
import { patchRequests, prRuns } from '../../src/db/schema/index.ts';
import type { QueuedResponse } from '../../src/demo/fakes/github.ts';
import type { FakeGroq } from '../../src/demo/fakes/groq.ts';
import { headBranch, type FileValue } from '../../src/demo/git-repository.ts';
import { createApp } from '../../src/web/app.tsx';
import {
  createGitHubTestContext,
  insertInstallation,
  insertRun,
  insertUser,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from './github-context.ts';

const execFileAsync = promisify(execFile);

/** Text of `app.txt` at the pull request's head, and the preview's proposed text for it. */
export const headText = 'one\ntwo\nthree\n';
export const proposedText = 'one\nTWO\nthree\n';
/** Octokit sends the ref `heads/feature` percent-encoded, as `heads%2Ffeature`. */
export const refPattern = new RegExp(`/git/refs/heads(/|%2F)${headBranch}$`);
/** Path of the read of the head branch, `GET …/git/ref/heads/feature`. */
export const readRefPattern = new RegExp(`/git/ref/heads(/|%2F)${headBranch}$`);

/** A read of the head branch that lacks the commit's sha, which Apply rejects as an invalid response. */
export const invalidBranchRead: QueuedResponse = {
  method: 'GET',
  path: readRefPattern,
  status: 200,
  body: { ref: `refs/heads/${headBranch}`, object: { type: 'commit' } },
};

/**
 * Queues the response that the head branch points to `sha` for the next read of the branch. The
 * apply reads the branch before it updates it, so this stands for the state before a push that
 * lands between that read and the update.
 */
export function queueBranchAt(setup: GitHubTestContext, sha: string): void {
  setup.fake.queueResponse({
    method: 'GET',
    path: readRefPattern,
    status: 200,
    body: { ref: `refs/heads/${headBranch}`, object: { sha, type: 'commit' } },
  });
}

/** A fake GitHub with one pull request, its user, installation and run. */
export interface ApplyTestContext {
  setup: GitHubTestContext;
  app: ReturnType<typeof createApp>;
  user: Awaited<ReturnType<typeof insertUser>>;
  runId: string;
}

/**
 * Creates the fake GitHub with the pull request, and the user, installation and run. The pull
 * request changes `app.txt` from `one` to `headText` unless `base` and `head` give other
 * files, and `env` adds configuration such as WEBHOOK_SECRET.
 */
export async function createApplyTestContext(
  options: {
    base?: Record<string, FileValue>;
    head?: Record<string, FileValue | null>;
    env?: Record<string, string>;
    /** Maximum bytes of one GitHub response body, or the app's default when unset. */
    maxResponseBytes?: number;
  } = {},
): Promise<ApplyTestContext> {
  const setup = await createGitHubTestContext({
    base: options.base ?? { 'app.txt': 'one\n' },
    head: options.head ?? { 'app.txt': headText },
    env: options.env ?? {},
    maxResponseBytes: options.maxResponseBytes,
  });
  const app = createApp(setup.context);
  const user = await insertUser(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId, userId: user.id });
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
  });
  return { setup, app, user, runId: run.id };
}

/**
 * Creates a preview of `findingIds` for the context's user and runs its job once, with the fake
 * Groq returning `modelText` for every file. Returns the preview's id.
 */
export async function runPreviewOfFindings(
  context: ApplyTestContext,
  groq: FakeGroq,
  findingIds: string[],
  modelText: string,
): Promise<string> {
  const { setup } = context;
  const request = await createPatchRequest(setup.context.db, setup.context.boss, {
    runId: context.runId,
    userId: context.user.id,
    findingIds,
  });
  if (!request.ok) throw new Error('patch request not created');
  groq.setHandler(() => ({ text: modelText }));
  await runPreview(setup.context, request.id, 0, setup.context.logger);
  return request.id;
}

/** Runs git in the fake's repository and returns its trimmed output. */
export async function gitIn(setup: GitHubTestContext, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', ['-C', setup.git.dir, ...args]);
  return stdout.trim();
}

/**
 * Moves the branch back to the previewed head and registers the pull request again, so each
 * test starts from the head the preview was made at. A successful apply moves the pull
 * request's head in the fake, as a push does on GitHub.
 */
export async function resetPullRequestHead(setup: GitHubTestContext): Promise<void> {
  await gitIn(setup, 'update-ref', `refs/heads/${headBranch}`, setup.git.headSha);
  setup.fake.addPullRequest({
    owner,
    repo,
    number: prNumber,
    baseSha: setup.git.baseSha,
    headSha: setup.git.headSha,
    headRef: headBranch,
    title: 'Change widgets',
  });
}

/**
 * Resets the head as resetPullRequestHead does, deletes the runs of other heads that an apply
 * which found the head moved recorded, and marks run `runId` completed again.
 */
export async function resetApplyRun(setup: GitHubTestContext, runId: string): Promise<void> {
  await resetPullRequestHead(setup);
  await setup.context.db.delete(prRuns).where(ne(prRuns.id, runId));
  await setup.context.db.update(prRuns).set({ status: 'completed', error: null }).where(eq(prRuns.id, runId));
}

/** Posts `POST /api/patch-requests/:id/apply` as the context's user. */
export function requestApply(context: ApplyTestContext, id: string, body?: unknown) {
  return context.app.request(`/api/patch-requests/${id}/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${context.user.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Builds the 502 message of an apply that got an invalid response with status `status` to `request`. */
export function invalidResponseMessage(id: string, request: string, status: number, problem: string): string {
  return (
    `GitHub returned an invalid response (status ${status}) to ${request}: ${problem}. GitHub, ` +
    'or a proxy between this server and GITHUB_API_URL, may be failing, so wait a few minutes. ' +
    `Patch request ${id} was not applied, so you can apply it again after that.`
  );
}

/** Counts the requests to the fake GitHub that write: git objects, ref updates and reviews. */
export function countApplyWrites(setup: GitHubTestContext): number {
  return setup.fake.requests.filter(
    (request) =>
      (request.method === 'POST' && /\/git\/(blobs|trees|commits)$/.test(request.path)) ||
      (request.method === 'PATCH' && request.path.includes('/git/refs/')) ||
      (request.method === 'POST' && request.path.endsWith(`/pulls/${prNumber}/reviews`)),
  ).length;
}

/**
 * Checks that patch request `id` is unclaimed, unapplied and still ready, that no write reached
 * the fake GitHub since `writesBefore` (from countApplyWrites), and that the branch is unchanged.
 */
export async function expectNothingApplied(
  setup: GitHubTestContext,
  id: string,
  writesBefore: number,
): Promise<void> {
  expect(countApplyWrites(setup)).toBe(writesBefore);
  expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
  const [row] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  expect(row!.status).toBe('ready');
  expect(row!.applyStartedAt).toBeNull();
  expect(row!.appliedAt).toBeNull();
}
