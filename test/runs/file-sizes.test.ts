import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings } from '../../src/db/schema/index.ts';
import { readFileSizes } from '../../src/github/file-sizes.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import { owner, repo } from '../github/harness.ts';
import { createAnalyzeTestContext, type AnalyzeTestContext } from './analyze-context.ts';

const treesPattern = '/repos/:owner/:repo/git/trees/:tree_sha';
const app = "export const a = 1;\nconsole.log('é', a);\n";
const tool = 'total = 2\nprint("total", total)\n';

let setup: AnalyzeTestContext;

beforeAll(async () => {
  setup = await createAnalyzeTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'README.md': '# x\n', 'src/app.ts': app, 'scripts/tool.py': tool },
  });
});

afterAll(async () => {
  await setup?.close();
});

/** Analyzes a new run and returns the recorded size of each path with findings. */
async function analyzeNewRun() {
  const run = await setup.createRun();
  const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);
  expect(outcome.status).toBe('completed');
  const rows = await setup.context.db.select().from(findings).where(eq(findings.runId, run.id));
  return new Map(rows.map((row) => [row.path, row.fileBytes]));
}

describe('analyzeRun file sizes', () => {
  it('stores the size of each file with findings', async () => {
    const sizes = await analyzeNewRun();
    expect(sizes.get('src/app.ts')).toBe(Buffer.byteLength(app, 'utf8'));
    expect(sizes.get('scripts/tool.py')).toBe(Buffer.byteLength(tool, 'utf8'));
    expect(sizes.size).toBe(2);
  });

  it('stores no size when the tree request fails', async () => {
    setup.harness.fake.queueResponse({ method: 'GET', path: treesPattern, status: 404, body: { message: 'Not Found' } });
    const sizes = await analyzeNewRun();
    expect(sizes.get('src/app.ts')).toBeNull();
    expect(sizes.get('scripts/tool.py')).toBeNull();
    expect(setup.context.logs.some((line) => line.event === 'analyze.file_sizes_failed')).toBe(true);
  });

  it.each([
    [
      'an entry without its sha',
      (served: { tree: object[] }) => ({
        body: { ...served, tree: [{ ...served.tree[0], sha: undefined }, ...served.tree.slice(1)] },
      }),
      'tree.0.sha: Invalid input: expected string, received undefined',
    ],
    [
      "a proxy's HTML page",
      () => ({ headers: { 'content-type': 'text/html' }, body: '<html><body>Bad Gateway</body></html>' }),
      'body: Invalid input: expected object, received string',
    ],
  ])('stores no size for a tree response with %s', async (_case, change, problem) => {
    const octokit = await setup.harness.app.installationOctokit(setup.harness.installationId);
    const { data: served } = await octokit.rest.git.getTree({
      owner,
      repo,
      tree_sha: setup.harness.repository.headSha,
    });
    setup.harness.fake.queueResponse({ method: 'GET', path: treesPattern, status: 200, ...change(served) });
    const failedBefore = setup.context.logs.filter((line) => line.event === 'analyze.file_sizes_failed').length;

    const sizes = await analyzeNewRun();

    expect(sizes.get('src/app.ts')).toBeNull();
    expect(sizes.get('scripts/tool.py')).toBeNull();
    const failed = setup.context.logs
      .filter((line) => line.event === 'analyze.file_sizes_failed')
      .slice(failedBefore);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.level).toBe(40);
    expect(failed[0]!.err).toMatchObject({
      type: 'UnexpectedGitHubAnswerError',
      message: problem,
      status: 200,
    });
  });

  it('stores no size for a path the tree leaves out', async () => {
    setup.harness.fake.queueResponse({
      method: 'GET',
      path: treesPattern,
      status: 200,
      body: { sha: setup.harness.repository.headSha, url: '', tree: [], truncated: false },
    });
    const sizes = await analyzeNewRun();
    expect(sizes.get('src/app.ts')).toBeNull();
    const missing = setup.context.logs.find((line) => line.event === 'analyze.file_sizes_missing');
    expect(missing?.missing).toBe(2);
    expect(missing?.limited).toBe(false);
  });
});

describe('readFileSizes', () => {
  const target = () => ({ owner, repo, ref: setup.harness.repository.headSha });

  it('reads each directory on the paths once', async () => {
    const before = setup.harness.fake.requests.length;
    const { sizes, limited } = await readFileSizes(
      await setup.harness.app.installationOctokit(setup.harness.installationId),
      target(),
      new Set(['src/app.ts', 'scripts/tool.py', 'README.md', 'src/missing.ts']),
    );
    expect(Object.fromEntries(sizes)).toEqual({
      'README.md': 4,
      'scripts/tool.py': Buffer.byteLength(tool, 'utf8'),
      'src/app.ts': Buffer.byteLength(app, 'utf8'),
    });
    expect(limited).toBe(false);
    const treeReads = setup.harness.fake.requests
      .slice(before)
      .filter((request) => request.path.includes('/git/trees/'));
    // The root, scripts and src.
    expect(treeReads).toHaveLength(3);
  });

  it('stops at the read limit', async () => {
    const { sizes, limited } = await readFileSizes(
      await setup.harness.app.installationOctokit(setup.harness.installationId),
      target(),
      new Set(['src/app.ts', 'scripts/tool.py']),
      { maxReads: 2 },
    );
    // scripts/tool.py takes the root and scripts. Reading src would be the third request.
    expect(Object.fromEntries(sizes)).toEqual({ 'scripts/tool.py': Buffer.byteLength(tool, 'utf8') });
    expect(limited).toBe(true);
  });
});

describe('readFileSizes read limit', () => {
  it('makes no read past the limit on a nested path', async () => {
    const before = setup.harness.fake.requests.length;
    const { sizes, limited } = await readFileSizes(
      await setup.harness.app.installationOctokit(setup.harness.installationId),
      { owner, repo, ref: setup.harness.repository.headSha },
      new Set(['src/app.ts']),
      { maxReads: 1 },
    );
    const treeReads = setup.harness.fake.requests
      .slice(before)
      .filter((request) => request.path.includes('/git/trees/'));
    // src/app.ts needs the root and src, two reads, so the limit of 1 leaves it without a size.
    expect(treeReads).toHaveLength(1);
    expect(sizes.size).toBe(0);
    expect(limited).toBe(true);
  });
});
