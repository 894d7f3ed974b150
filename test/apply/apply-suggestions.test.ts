import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sharedFixDiffWorker } from '../../src/analysis/diff-worker.ts';
import { patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertReadyPatchRequest,
  insertRun,
  insertUser,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

const execFileAsync = promisify(execFile);

const letters = 'abcdefghijkl'.split('');
const baseLines = letters.map((letter, index) => `const ${letter} = ${index + 1};`);
const headLines = [
  ...baseLines.slice(0, 4),
  "console.log('c', c);",
  "console.log('d', d);",
  ...baseLines.slice(4),
];
const headText = headLines.join('\n') + '\n';
// Line 3 and the two logging lines are inside the pull request's hunk; line 14 is not.
const proposedLines = [...headLines];
proposedLines[2] = 'const c = 30;';
proposedLines.splice(4, 2, "console.debug('c, d', c, d);");
proposedLines[proposedLines.length - 1] = 'const l = 120;';
const proposedText = proposedLines.join('\n') + '\n';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let user: Awaited<ReturnType<typeof insertUser>>;
let runId: string;

const pullRequest = { owner, repo, number: prNumber };

function apply(id: string, body?: unknown) {
  return app.request(`/api/patch-requests/${id}/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function storedRequest(id: string) {
  const [stored] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  return stored;
}

function newRequest() {
  return insertReadyPatchRequest(setup.context, {
    runId,
    userId: user.id,
    files: [{ path: 'src/app.ts', originalText: headText, proposedText }],
  });
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': baseLines.join('\n') + '\n' },
    head: { 'src/app.ts': headText },
  });
  app = createApp(setup.context);
  user = await insertUser(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId, userId: user.id });
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
    headRepository: 'forker/widgets',
  });
  runId = run.id;
  setup.fake.updatePullRequest(pullRequest, { headOwner: 'forker' });
});

afterAll(async () => {
  await setup?.close();
});

describe('POST /api/patch-requests/:id/apply on a fork', () => {
  it('posts suggestions on the changed lines', async () => {
    const request = await newRequest();
    const response = await apply(request.id);
    expect(response.status).toBe(200);
    const result = await response.json();

    const review = setup.fake.reviews.at(-1)!;
    expect(result.mode).toBe('suggestions');
    expect(result.reviewId).toBe(review.id);
    expect(result.commitSha).toBeNull();
    expect(review.owner).toBe(owner);
    expect(review.repo).toBe(repo);
    expect(review.pullNumber).toBe(prNumber);
    expect(review.commitId).toBe(setup.git.headSha);
    expect(review.event).toBe('COMMENT');
    expect(review.comments).toEqual([
      {
        id: expect.any(Number),
        path: 'src/app.ts',
        line: 3,
        side: 'RIGHT',
        startLine: null,
        startSide: null,
        body: '```suggestion\nconst c = 30;\n```',
      },
      {
        id: expect.any(Number),
        path: 'src/app.ts',
        line: 6,
        side: 'RIGHT',
        startLine: 5,
        startSide: 'RIGHT',
        body: "```suggestion\nconsole.debug('c, d', c, d);\n```",
      },
    ]);
    expect(review.body).toContain(`patch request ${request.id}`);
    expect(review.body).toContain(
      'These changes cannot be suggestions, because each one:\n' +
        "- touches lines that are not all in one hunk of this pull request's diff,\n" +
        "- changes a file's final line break, or the last line of a file without one, where " +
        'accepting a suggestion may add a line break,\n' +
        '- or would make a suggestion too long for a review comment.\n\n' +
        'Apply them by hand:\n\n',
    );
    expect(review.body).toContain(
      '```diff\n--- a/src/app.ts\n+++ b/src/app.ts\n@@ -14,1 +13,1 @@\n',
    );
    expect(review.body).toContain('-const l = 12;\n+const l = 120;\n```');

    const stored = await storedRequest(request.id);
    expect(stored!.applyMode).toBe('suggestions');
    expect(stored!.appliedReviewId).toBe(review.id);
    const { stdout } = await execFileAsync('git', ['-C', setup.git.dir, 'rev-parse', headBranch]);
    expect(stdout.trim()).toBe(setup.git.headSha);
  });

  it('rejects commit mode for a fork', async () => {
    const request = await newRequest();
    const response = await apply(request.id, { mode: 'commit' });
    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toContain('fork forker/widgets');
  });

  /**
   * Runs `test` while the fork is deleted: GitHub sends head.repo null, and the run has the
   * empty head repository that it stores for that.
   */
  async function withDeletedFork(test: () => Promise<void>) {
    const setHeadRepository = (headRepository: string) =>
      setup.context.db.update(prRuns).set({ headRepository }).where(eq(prRuns.id, runId));
    await setHeadRepository('');
    setup.fake.updatePullRequest(pullRequest, { headRepo: null });
    try {
      await test();
    } finally {
      await setHeadRepository('forker/widgets');
      setup.fake.updatePullRequest(pullRequest, { headRepo: repo });
    }
  }

  it('rejects commit mode after the fork was deleted', async () => {
    await withDeletedFork(async () => {
      const request = await newRequest();
      const response = await apply(request.id, { mode: 'commit' });

      expect(response.status).toBe(400);
      expect((await response.json()).error.message).toBe(
        'Invalid mode "commit": the head repository of the pull request was deleted, so ' +
          'there is no branch to push to; use mode "suggestions".',
      );
      const stored = await storedRequest(request.id);
      expect(stored!.appliedAt).toBeNull();
      expect(stored!.applyStartedAt).toBeNull();
    });
  });

  it('posts suggestions by default after the fork was deleted', async () => {
    await withDeletedFork(async () => {
      const request = await newRequest();
      const response = await apply(request.id);

      expect(response.status).toBe(200);
      const result = await response.json();
      expect(result.mode).toBe('suggestions');
      expect(result.commitSha).toBeNull();
      expect(result.reviewId).toBe(setup.fake.reviews.at(-1)!.id);
    });
  });

  it('answers 503 when the diff times out', async () => {
    const diff = vi
      .spyOn(sharedFixDiffWorker, 'structuredPatch')
      .mockResolvedValueOnce({ status: 'timed_out' });
    const reviews = setup.fake.reviews.length;
    const request = await newRequest();

    let response;
    try {
      response = await apply(request.id);
    } finally {
      diff.mockRestore();
    }

    expect(response.status).toBe(503);
    expect((await response.json()).error.message).toBe(
      'The diff for the suggestions on src/app.ts did not finish within 30 s, so nothing was ' +
        'posted. The server may be busy, so apply the patch request again in a few minutes.',
    );
    expect(setup.fake.reviews).toHaveLength(reviews);
    const stored = await storedRequest(request.id);
    expect(stored!.appliedAt).toBeNull();
    expect(stored!.applyStartedAt).toBeNull();
    const retried = await apply(request.id);
    expect(retried.status).toBe(200);
    expect(setup.fake.reviews).toHaveLength(reviews + 1);
  });

  it('answers 409 when the pull request moved', async () => {
    const moved = await commitOnBranch(setup.git.dir, headBranch, { 'other.txt': 'x\n' });
    setup.fake.updatePullRequest(pullRequest, { headSha: moved });
    const reviews = setup.fake.reviews.length;
    const request = await newRequest();
    const response = await apply(request.id);

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toContain(`to ${moved} since the preview`);
    expect(setup.fake.reviews).toHaveLength(reviews);
  });
});
