import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeCommit, writeTree } from '../../src/demo/fakes/github/git.ts';
import { baseBranch, commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import { UnexpectedGitHubAnswerError } from '../../src/github/github-response.ts';
import { readMergeBase } from '../../src/github/merge-base.ts';
import { owner, repo, requestsTo, startHarness, type Harness } from './harness.ts';

let harness: Harness;
let forkPoint: string;
let baseTip: string;

beforeAll(async () => {
  harness = await startHarness({
    base: { 'src/table.ts': 'export {};\n', 'README.md': '# Widgets\n' },
    head: { 'src/table.ts': 'export {};\nexport const rows = 1;\n' },
  });
  forkPoint = harness.repository.baseSha;
  // The base branch moves on after the head branch left it.
  baseTip = await commitOnBranch(harness.repository.dir, baseBranch, {
    'README.md': '# Widgets, updated\n',
  });
});

afterAll(async () => {
  await harness?.close();
});

describe('readMergeBase', () => {
  it('returns the fork point of the base branch', async () => {
    const mergeBase = await readMergeBase(harness.octokit, {
      owner,
      repo,
      base: baseBranch,
      head: harness.repository.headSha,
    });

    expect(mergeBase).toBe(forkPoint);
    const [request] = requestsTo(harness.fake, 'GET', /\/compare\//).slice(-1);
    expect(request?.path).toBe(
      `/repos/${owner}/${repo}/compare/${baseBranch}...${harness.repository.headSha}`,
    );
    expect(request?.query).toEqual({ per_page: '1' });
  });

  it('returns null for an unknown ref', async () => {
    const mergeBase = await readMergeBase(harness.octokit, {
      owner,
      repo,
      base: 'no-such-branch',
      head: harness.repository.headSha,
    });

    expect(mergeBase).toBeNull();
  });

  it.each([
    ['null', null],
    ['without a sha', {}],
    ['with a null sha', { sha: null }],
    ['with an empty sha', { sha: '' }],
  ])('returns null for a merge base commit %s', async (_shape, mergeBaseCommit) => {
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/compare/*basehead',
      status: 200,
      body: { status: 'diverged', merge_base_commit: mergeBaseCommit, commits: [], files: [] },
    });
    const mergeBase = await readMergeBase(harness.octokit, {
      owner,
      repo,
      base: baseBranch,
      head: harness.repository.headSha,
    });

    expect(mergeBase).toBeNull();
  });

  it.each([
    [
      "a proxy's HTML page",
      { headers: { 'content-type': 'text/html' }, body: '<html><body>Bad Gateway</body></html>' },
      'body: Invalid input: expected object, received string',
    ],
    [
      'a comparison without merge_base_commit',
      { body: { status: 'diverged', commits: [], files: [] } },
      'merge_base_commit: Invalid input: expected object, received undefined',
    ],
    [
      'a merge base sha as a number',
      { body: { status: 'diverged', merge_base_commit: { sha: 7 }, commits: [], files: [] } },
      'merge_base_commit.sha: Invalid input: expected string, received number',
    ],
    [
      'a malformed merge base sha',
      { body: { status: 'diverged', merge_base_commit: { sha: 'main' }, commits: [], files: [] } },
      'merge_base_commit.sha: expected a commit sha of 40 lowercase hex digits',
    ],
  ])('rejects %s', async (_case, response, problem) => {
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/compare/*basehead',
      status: 200,
      ...response,
    });

    const error = await readMergeBase(harness.octokit, {
      owner,
      repo,
      base: baseBranch,
      head: harness.repository.headSha,
    }).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(UnexpectedGitHubAnswerError);
    expect(error).toMatchObject({
      method: 'GET',
      path: `/repos/${owner}/${repo}/compare/${baseBranch}...${harness.repository.headSha}`,
      status: 200,
      problem,
    });
  });

  it('returns null without common history', async () => {
    const { dir } = harness.repository;
    const identity = {
      name: 'Fixwright Test',
      email: 'test@fixwright.invalid',
      date: '2024-01-01T00:00:00Z',
    };
    const tree = await writeTree(dir, null, []);
    const orphan = await writeCommit(dir, {
      tree,
      parents: [],
      author: identity,
      committer: identity,
      message: 'Unrelated root',
    });

    const mergeBase = await readMergeBase(harness.octokit, {
      owner,
      repo,
      base: orphan,
      head: harness.repository.headSha,
    });

    expect(mergeBase).toBeNull();
  });
});

describe('fake compare endpoint', () => {
  it('compares the branches as GitHub does', async () => {
    const { data } = await harness.octokit.rest.repos.compareCommitsWithBasehead({
      owner,
      repo,
      basehead: `${baseBranch}...${headBranch}`,
    });

    expect(data.merge_base_commit.sha).toBe(forkPoint);
    expect(data.base_commit.sha).toBe(baseTip);
    expect(data.status).toBe('diverged');
    expect(data.ahead_by).toBe(1);
    expect(data.behind_by).toBe(1);
    expect(data.total_commits).toBe(1);
    expect(data.commits.map((commit) => commit.sha)).toEqual([harness.repository.headSha]);
    expect(data.commits[0]?.parents.map((parent) => parent.sha)).toEqual([forkPoint]);
    expect(data.commits[0]?.commit.message).toBe('Head commit');
    // The README changed only on the base branch, so the three-dot diff leaves it out.
    expect(data.files?.map((file) => [file.filename, file.status, file.additions])).toEqual([
      ['src/table.ts', 'modified', 1],
    ]);
    expect(data.files?.[0]?.patch).toBe('@@ -1 +1,2 @@\n export {};\n+export const rows = 1;');
  });

  it('lists files on the first page only', async () => {
    const basehead = `${baseBranch}...${headBranch}`;
    const first = await harness.octokit.rest.repos.compareCommitsWithBasehead({
      owner,
      repo,
      basehead,
      per_page: 1,
    });
    const second = await harness.octokit.rest.repos.compareCommitsWithBasehead({
      owner,
      repo,
      basehead,
      per_page: 1,
      page: 2,
    });

    expect(first.data.commits).toHaveLength(1);
    expect(first.data.files).toHaveLength(1);
    expect(second.data.commits).toEqual([]);
    expect(second.data.files).toEqual([]);
    expect(second.data.merge_base_commit.sha).toBe(forkPoint);
  });

  it('rejects a two-dot range', async () => {
    const request = harness.octokit.rest.repos.compareCommitsWithBasehead({
      owner,
      repo,
      basehead: `${baseBranch}..${headBranch}`,
    });

    await expect(request).rejects.toMatchObject({ status: 404 });
  });
});
