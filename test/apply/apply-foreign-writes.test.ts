// Apply looks on GitHub for the review or commit of an earlier call, and takes only the ones
// that this GitHub App wrote. The patch request id is shown with the "Fix with AI" notice, so
// anyone who can review the pull request or push to its branch can write text that names it.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { patchRequests } from '../../src/db/schema/index.ts';
import { appBotLogin, appBotUserId } from '../../src/demo/fakes/github/app.ts';
import { defaultRoutes } from '../../src/demo/fakes/github/routes.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import {
  createApplyTestContext,
  gitIn,
  headText,
  proposedText,
  requestApply,
  resetApplyRun,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import {
  insertReadyPatchRequest,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

const execFileAsync = promisify(execFile);

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;

const git = (...args: string[]) => gitIn(setup, ...args);
const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);
const pullRequest = { owner, repo, number: prNumber };

function newRequest() {
  return insertReadyPatchRequest(setup.context, {
    runId: applyContext.runId,
    userId: applyContext.user.id,
    files: [{ path: 'app.txt', originalText: headText, proposedText }],
  });
}

async function stored(id: string) {
  const [row] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, id));
  return row!;
}

async function readPreview(id: string) {
  const response = await applyContext.app.request(`/api/patch-requests/${id}`, {
    headers: { authorization: `Bearer ${applyContext.user.token}` },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as { applied: { mode: string; reviewId: number | null } | null };
}

/** Adds a review on the previewed head whose body reads like Fixwright's for `patchRequestId`. */
function addLookalikeReview(patchRequestId: string, user: string, userType: 'User' | 'Bot') {
  return setup.fake.addReview({
    owner,
    repo,
    pullNumber: prNumber,
    commitId: setup.git.headSha,
    body:
      `Fixwright suggests fixes in 1 file from patch request ${patchRequestId}, previewed at ` +
      `${setup.git.headSha.slice(0, 7)}.\n\`\`\`suggestion\nrequire("child_process").exec(process.env.X)\n\`\`\``,
    user,
    userType,
  });
}

/** Puts the request back as a call leaves it that claimed it and died 11 minutes ago. */
async function markClaimLeft(id: string) {
  await setup.context.db
    .update(patchRequests)
    .set({ applyStartedAt: new Date(Date.now() - 11 * 60_000) })
    .where(eq(patchRequests.id, id));
}

/** Returns the address of the app's bot user that GitHub writes into the commits the app creates. */
function botEmail(): string {
  return `${appBotUserId}+${appBotLogin}@users.noreply.${new URL(setup.fake.url).hostname}`;
}

/**
 * Commits the preview's text on the previewed head with git, as a push does, authored and
 * committed with the bot's name and `email` (the bot's address unless given) and with the
 * message of Fixwright's commit.
 */
async function pushLookalikeCommit(patchRequestId: string, email = botEmail()): Promise<string> {
  // The tree of the preview's text, from a commit that the branch does not keep.
  const draft = await commitOnBranch(setup.git.dir, headBranch, { 'app.txt': proposedText });
  const identity = {
    GIT_AUTHOR_NAME: appBotLogin,
    GIT_AUTHOR_EMAIL: email,
    GIT_COMMITTER_NAME: appBotLogin,
    GIT_COMMITTER_EMAIL: email,
  };
  const message =
    `Apply Fixwright fixes to 1 file\n\nFixes previewed by patch request ${patchRequestId} ` +
    `for run ${applyContext.runId} at ${setup.git.headSha}.`;
  const { stdout } = await execFileAsync(
    'git',
    ['-C', setup.git.dir, 'commit-tree', `${draft}^{tree}`, '-p', setup.git.headSha, '-m', message],
    { env: { ...process.env, ...identity } },
  );
  const sha = stdout.trim();
  await git('update-ref', `refs/heads/${headBranch}`, sha);
  setup.fake.updatePullRequest(pullRequest, { headSha: sha });
  return sha;
}

beforeAll(async () => {
  applyContext = await createApplyTestContext();
  setup = applyContext.setup;
});

beforeEach(async () => {
  await resetApplyRun(setup, applyContext.runId);
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply, reviews of others', () => {
  for (const [user, userType] of [
    ['mallory', 'User'],
    ['copycat[bot]', 'Bot'],
  ] as const) {
    it(`posts its own review over a ${userType}'s`, async () => {
      const request = await newRequest();
      const lookalike = addLookalikeReview(request.id, user, userType);

      const response = await apply(request.id, { mode: 'suggestions' });

      const result = await response.json();
      expect(response.status, JSON.stringify(result)).toBe(200);
      const own = setup.fake.reviews.filter(
        (review) => review.user === appBotLogin && review.body.includes(request.id),
      );
      expect(own).toHaveLength(1);
      expect(result.reviewId).toBe(own[0]!.id);
      expect(result.reviewId).not.toBe(lookalike.id);
      expect((await stored(request.id)).appliedReviewId).toBe(own[0]!.id);
      expect((await readPreview(request.id)).applied).toMatchObject({
        mode: 'suggestions',
        reviewId: own[0]!.id,
      });
    });
  }

  it('rejects a moved head with only their review', async () => {
    const request = await newRequest();
    addLookalikeReview(request.id, 'mallory', 'User');
    // A call that claimed the request died, and the head moved on since.
    await markClaimLeft(request.id);
    setup.fake.updatePullRequest(pullRequest, { headSha: setup.git.baseSha });

    const response = await apply(request.id, { mode: 'suggestions' });

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toContain('since the preview');
    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.appliedReviewId).toBeNull();
  });

  it('commits over their review after a dead call', async () => {
    const request = await newRequest();
    addLookalikeReview(request.id, 'mallory', 'User');
    await markClaimLeft(request.id);

    const response = await apply(request.id, { mode: 'commit' });

    const result = await response.json();
    expect(response.status, JSON.stringify(result)).toBe(200);
    expect(result.mode).toBe('commit');
    expect(result.reviewId).toBeNull();
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
  });
});

describe('apply, commits of others', () => {
  it('rejects a pushed commit naming the request', async () => {
    const request = await newRequest();
    const pushed = await pushLookalikeCommit(request.id);

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toContain(
      `Branch ${headBranch} moved from ${setup.git.headSha} to ${pushed} since the preview.`,
    );
    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.appliedCommitSha).toBeNull();
  });

  it('rejects a signed commit from another host', async () => {
    const request = await newRequest();
    // The bot's local part at a host that the pusher controls and verified on their account.
    const lookalike = `${appBotUserId}+${appBotLogin}@users.noreply.attacker.example`;
    const pushed = await pushLookalikeCommit(request.id, lookalike);
    // GitHub reports the commit verified: the pusher signed it with their own key.
    const readCommit = defaultRoutes.find(
      (route) => route.method === 'GET' && route.pattern === '/repos/:owner/:repo/git/commits/:commit_sha',
    )!;
    setup.fake.addRoute({
      ...readCommit,
      handle(context) {
        context.state.signedCommits.add(pushed);
        return readCommit.handle(context);
      },
    });

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toContain(
      `Branch ${headBranch} moved from ${setup.git.headSha} to ${pushed} since the preview.`,
    );
    expect((await stored(request.id)).appliedCommitSha).toBeNull();
  });

  it('rejects an unsigned API commit as the bot', async () => {
    const request = await newRequest();
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const parent = await octokit.rest.git.getCommit({ owner, repo, commit_sha: setup.git.headSha });
    // A commit with a custom author is not signed by GitHub, whatever address it names.
    const { data: commit } = await octokit.rest.git.createCommit({
      owner,
      repo,
      message: `Fixes previewed by patch request ${request.id} for run ${applyContext.runId}.`,
      tree: parent.data.tree.sha,
      parents: [setup.git.headSha],
      author: { name: appBotLogin, email: botEmail() },
    });
    expect(commit.verification?.verified).toBe(false);
    expect(commit.author.email).toBe(botEmail());
    await git('update-ref', `refs/heads/${headBranch}`, commit.sha);
    setup.fake.updatePullRequest(pullRequest, { headSha: commit.sha });

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(409);
    expect((await stored(request.id)).appliedCommitSha).toBeNull();
  });

  it('records its own signed commit', async () => {
    const request = await newRequest();
    const first = await apply(request.id, { mode: 'commit' });
    expect(first.status).toBe(200);
    const { commitSha } = await first.json();
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const { data: commit } = await octokit.rest.git.getCommit({ owner, repo, commit_sha: commitSha });
    expect(commit.author).toMatchObject({ name: appBotLogin, email: botEmail() });
    expect(commit.committer).toMatchObject({
      name: 'GitHub',
      email: `noreply@${new URL(setup.fake.url).hostname}`,
    });
    expect(commit.verification).toMatchObject({ verified: true, reason: 'valid' });
    // The call died after the push, before it recorded the commit.
    await setup.context.db
      .update(patchRequests)
      .set({ appliedAt: null, applyMode: null, appliedCommitSha: null })
      .where(eq(patchRequests.id, request.id));
    await markClaimLeft(request.id);

    const again = await apply(request.id, { mode: 'commit' });

    expect(again.status).toBe(200);
    expect((await again.json()).commitSha).toBe(commitSha);
    expect((await stored(request.id)).appliedCommitSha).toBe(commitSha);
  });
});
