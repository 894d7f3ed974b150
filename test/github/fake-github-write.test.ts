import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Octokit } from '@octokit/rest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPermissions } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { owner, pullNumber, repo, startHarness, type Harness } from './harness.ts';

const execFileAsync = promisify(execFile);

let harness: Harness;
let octokit: Octokit;

async function git(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', ['-C', harness.repository.dir, ...args]);
  return stdout.trim();
}

async function statusOf(promise: Promise<unknown>): Promise<number | undefined> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  return (error as { status?: number } | undefined)?.status;
}

beforeAll(async () => {
  harness = await startHarness({
    base: { 'README.md': '# Widgets\n', 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 1;\nexport const b = 2;\n' },
  });
  octokit = harness.octokit;
});

afterAll(async () => {
  await harness?.close();
});

describe('fake git data API', () => {
  it('commits a nested file and fast-forwards the branch', async () => {
    const head = harness.repository.headSha;
    const bytes = Buffer.from('line one\r\nline two', 'utf8');
    const blob = await octokit.rest.git.createBlob({
      owner,
      repo,
      content: bytes.toString('base64'),
      encoding: 'base64',
    });
    const headCommit = await octokit.rest.git.getCommit({ owner, repo, commit_sha: head });
    const tree = await octokit.rest.git.createTree({
      owner,
      repo,
      base_tree: headCommit.data.tree.sha,
      tree: [{ path: 'bin/run.sh', mode: '100755', type: 'blob', sha: blob.data.sha }],
    });
    const commit = await octokit.rest.git.createCommit({
      owner,
      repo,
      message: 'Add a script',
      tree: tree.data.sha,
      parents: [head],
    });
    const ref = await octokit.rest.git.updateRef({
      owner,
      repo,
      ref: `heads/${headBranch}`,
      sha: commit.data.sha,
      force: false,
    });

    expect(ref.data.object.sha).toBe(commit.data.sha);
    expect(await git('rev-parse', headBranch)).toBe(commit.data.sha);
    expect(await git('rev-parse', `${commit.data.sha}^`)).toBe(head);
    expect(await git('ls-tree', commit.data.sha, 'bin/run.sh')).toMatch(/^100755 blob /);
    const { stdout } = await execFileAsync(
      'git',
      ['-C', harness.repository.dir, 'cat-file', 'blob', `${commit.data.sha}:bin/run.sh`],
      { encoding: 'buffer' },
    );
    expect(Buffer.compare(stdout, bytes)).toBe(0);
    expect(await git('show', `${commit.data.sha}:src/app.ts`)).toContain('export const b');
    expect(commit.data.parents.map((parent) => parent.sha)).toEqual([head]);
  });

  it('rejects a ref update that is not a fast forward', async () => {
    const before = await git('rev-parse', headBranch);
    const stale = await octokit.rest.git.createCommit({
      owner,
      repo,
      message: 'Stale',
      tree: (await octokit.rest.git.getCommit({ owner, repo, commit_sha: before })).data.tree.sha,
      parents: [harness.repository.headSha],
    });
    const error = (await octokit.rest.git
      .updateRef({ owner, repo, ref: `heads/${headBranch}`, sha: stale.data.sha, force: false })
      .catch((caught: unknown) => caught)) as { status?: number; message?: string };

    expect(error.status).toBe(422);
    expect(error.message).toContain('Update is not a fast forward');
    expect(await git('rev-parse', headBranch)).toBe(before);
  });

  it('rejects a workflow tree without Workflows: write', async () => {
    const head = harness.repository.headSha;
    const blob = await octokit.rest.git.createBlob({ owner, repo, content: 'on: push\n' });
    const baseTree = (await octokit.rest.git.getCommit({ owner, repo, commit_sha: head })).data.tree.sha;
    const createWorkflowTree = () =>
      octokit.rest.git.createTree({
        owner,
        repo,
        base_tree: baseTree,
        tree: [{ path: '.github/workflows/ci.yml', mode: '100644', type: 'blob', sha: blob.data.sha }],
      });

    const error = (await createWorkflowTree().catch((caught: unknown) => caught)) as {
      status?: number;
      response?: { data?: unknown };
    };

    expect(error.status).toBe(403);
    expect(error.response?.data).toEqual({
      message: 'Resource not accessible by integration',
      documentation_url: 'https://docs.github.com/rest/git/trees#create-a-tree',
      status: '403',
    });
    // The fake reads the installation's permissions at each request, as for Contents: write.
    harness.fake.setInstallation({
      id: harness.installationId,
      account: { login: owner },
      permissions: { ...defaultPermissions, workflows: 'write' },
    });
    const tree = await createWorkflowTree();
    expect(tree.status).toBe(201);
    harness.fake.setInstallation({ id: harness.installationId, account: { login: owner } });
  });

  it('reads a tree with modes', async () => {
    const { data } = await octokit.rest.git.getTree({ owner, repo, tree_sha: headBranch });
    const paths = data.tree.map((entry) => [entry.path, entry.mode, entry.type]);
    expect(paths).toContainEqual(['src', '040000', 'tree']);
    expect(paths).toContainEqual(['README.md', '100644', 'blob']);
  });
});

describe('fake checks API', () => {
  const annotation = (line: number) => ({
    path: 'src/app.ts',
    start_line: line,
    end_line: line,
    annotation_level: 'warning' as const,
    message: `line ${line}`,
  });

  it('creates, updates and lists check runs', async () => {
    const created = await octokit.rest.checks.create({
      owner,
      repo,
      name: 'Fixwright',
      head_sha: harness.repository.headSha,
      external_id: 'run-1',
      status: 'completed',
      conclusion: 'neutral',
      output: { title: 'One', summary: 'Sum', annotations: [annotation(2)] },
      actions: [{ label: 'Fix with AI', description: 'Preview fixes', identifier: 'fix' }],
    });
    await octokit.rest.checks.update({
      owner,
      repo,
      check_run_id: created.data.id,
      output: { title: 'One', summary: 'Sum', annotations: [annotation(1)] },
    });
    const listed = await octokit.rest.checks.listForRef({
      owner,
      repo,
      ref: harness.repository.headSha,
      check_name: 'Fixwright',
    });

    expect(created.status).toBe(201);
    expect(listed.data.total_count).toBe(1);
    expect(listed.data.check_runs[0]?.external_id).toBe('run-1');
    expect(listed.data.check_runs[0]?.output.annotations_count).toBe(2);
    expect(harness.fake.checkRuns[0]?.actions[0]?.identifier).toBe('fix');
  });

  it('rejects 51 annotations in one request', async () => {
    const annotations = Array.from({ length: 51 }, (_, index) => annotation(index + 1));
    const status = await statusOf(
      octokit.rest.checks.create({
        owner,
        repo,
        name: 'Fixwright',
        head_sha: harness.repository.headSha,
        status: 'completed',
        conclusion: 'neutral',
        output: { title: 'Too many', summary: 'Sum', annotations },
      }),
    );
    expect(status).toBe(422);
  });

  it('gets a check run with its text', async () => {
    const created = await octokit.rest.checks.create({
      owner,
      repo,
      name: 'Fixwright',
      head_sha: harness.repository.headSha,
      status: 'completed',
      conclusion: 'neutral',
      output: { title: 'One', summary: 'Sum', annotations: [annotation(3)] },
    });
    await octokit.rest.checks.update({
      owner,
      repo,
      check_run_id: created.data.id,
      output: { title: 'One', summary: 'Sum', text: 'Pressed' },
    });

    const fetched = await octokit.rest.checks.get({ owner, repo, check_run_id: created.data.id });

    expect(fetched.data.id).toBe(created.data.id);
    expect(fetched.data.output.title).toBe('One');
    expect(fetched.data.output.summary).toBe('Sum');
    expect(fetched.data.output.text).toBe('Pressed');
    expect(fetched.data.output.annotations_count).toBe(1);
    const missing = await statusOf(
      octokit.rest.checks.get({ owner, repo, check_run_id: created.data.id + 100_000 }),
    );
    expect(missing).toBe(404);
  });

  it('rejects a text over 65535 characters', async () => {
    const status = await statusOf(
      octokit.rest.checks.create({
        owner,
        repo,
        name: 'Fixwright',
        head_sha: harness.repository.headSha,
        status: 'completed',
        conclusion: 'neutral',
        output: { title: 'Long', summary: 'Sum', text: 'x'.repeat(65536) },
      }),
    );
    expect(status).toBe(422);
  });

  it('rejects an action label over 20 characters', async () => {
    const status = await statusOf(
      octokit.rest.checks.create({
        owner,
        repo,
        name: 'Fixwright',
        head_sha: harness.repository.headSha,
        actions: [{ label: 'x'.repeat(21), description: 'd', identifier: 'fix' }],
      }),
    );
    expect(status).toBe(422);
  });
});

describe('fake issue comments API', () => {
  it('pages comments and edits one', async () => {
    for (let index = 0; index < 4; index++) {
      harness.fake.addIssueComment({ owner, repo, issueNumber: pullNumber, body: `c${index}` });
    }
    const created = await octokit.rest.issues.createComment({
      owner,
      repo,
      issue_number: pullNumber,
      body: 'from the app',
    });
    await octokit.rest.issues.updateComment({
      owner,
      repo,
      comment_id: created.data.id,
      body: 'edited',
    });
    const all = await octokit.paginate(octokit.rest.issues.listComments, {
      owner,
      repo,
      issue_number: pullNumber,
      per_page: 2,
    });

    expect(all.map((comment) => comment.body)).toEqual(['c0', 'c1', 'c2', 'c3', 'edited']);
    expect(all.at(-1)?.user?.type).toBe('Bot');
    expect(all.at(-1)?.performed_via_github_app?.slug).toBe('fixwright');
  });
});

describe('fake pull request reviews API', () => {
  it('accepts comments inside the diff', async () => {
    const { data } = await octokit.rest.pulls.createReview({
      owner,
      repo,
      pull_number: pullNumber,
      commit_id: harness.repository.headSha,
      event: 'COMMENT',
      body: 'Suggestions',
      comments: [
        {
          path: 'src/app.ts',
          start_line: 1,
          line: 2,
          side: 'RIGHT',
          start_side: 'RIGHT',
          body: 'x',
        },
      ],
    });
    expect(data.state).toBe('COMMENTED');
    expect(harness.fake.reviews.at(-1)?.comments[0]).toMatchObject({ startLine: 1, line: 2 });
  });

  it('rejects a comment outside the diff', async () => {
    const status = await statusOf(
      octokit.rest.pulls.createReview({
        owner,
        repo,
        pull_number: pullNumber,
        event: 'COMMENT',
        comments: [{ path: 'README.md', line: 1, side: 'RIGHT', body: 'x' }],
      }),
    );
    expect(status).toBe(422);
  });
});
