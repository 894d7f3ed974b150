import { monitorEventLoopDelay } from 'node:perf_hooks';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { terminateGraceMs } from '../../src/analysis/diff-worker.ts';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { baseBranch, commitOnBranch } from '../../src/demo/git-repository.ts';
import { listPullRequestFiles, type PullRequestFile } from '../../src/github/pull-files.ts';
import { maxGitHubResponseBytes } from '../../src/github/responses.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import { AnalysisStopped } from '../../src/runs/analysis-stop.ts';
import { fillMissingPatches, type MissingPatchOptions } from '../../src/runs/missing-patches.ts';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertRun,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { failingDiffWorker } from '../helpers/failing-diff-worker.ts';

// GitHub sends no `patch` for a file whose diff is over 20,000 lines; the fake does the same.
const addedCount = 25_000;
const secretLine = 'export const apiKey = "k3yV4lu3Zq8w7e6r5t";';
// Present at the fork point and at the head, but removed on the base branch since.
const legacyLine = 'export const legacyApiKey = "L3gacyZq8w7e6r5tk3y";';

function lines(count: number, line: (index: number) => string): string {
  return `${Array.from({ length: count }, (_, index) => line(index)).join('\n')}\n`;
}

const tail = lines(100, (index) => `export const tail${index} = ${index};`);
const tableAtForkPoint = `export {};\n${legacyLine}\n${tail}`;
// Lines 3 to 25,002 are new rows and line 25,003 the secret.
const tableAtHead =
  `export {};\n${legacyLine}\n` +
  lines(addedCount, (index) => `export const row${index} = ${index};`) +
  `${secretLine}\n${tail}`;

// Every third line changes, so git still finds the rename (two thirds are the same) but the
// diff is over 20,000 lines. Line 3,001 (index 3,000) becomes the secret.
const renamedCount = 30_000;
const oldNameText = lines(renamedCount, (index) => `export const item${index} = ${index};`);
const newNameText = lines(renamedCount, (index) => {
  if (index === 3000) return secretLine;
  if (index % 3 === 0) return `export const changed${index} = ${index};`;
  return `export const item${index} = ${index};`;
});

// Latin-1 at the fork point: git counts its lines, but it is not UTF-8, so Fixwright rejects it.
const latin1Base = Buffer.from(lines(10, (index) => `caf\u00e9;${index}`), 'latin1');
const convertedText = lines(addedCount, (index) => `cafe;${index}`);

// Longer at the fork point than at the head, for a limit between the two sizes.
const shrunkBase = lines(30_000, (index) => `an old and rather long value ${index}`);
const shrunkHead = lines(22_000, (index) => `new ${index}`);

// The 200 shared lines come back in reverse order, which a diff needs about 400 edits for.
const shuffledBase = lines(200, (index) => `shared ${index}`);
const shuffledHead =
  lines(200, (index) => `shared ${199 - index}`) +
  lines(addedCount, (index) => `appended ${index}`);

// Five distinct lines in two orders, so every line is shared and the diff cannot leave any out.
// Diffing 20,000 of them reaches the 1 s timeout of the default limits (see BENCHMARKS.md).
const repeatedLines = ['}', '', '  return value;', '{', '  const value = 1;'];
const reorderedBase = lines(20_000, (index) => repeatedLines[(index * 7) % 5]!);
const reorderedHead =
  lines(20_000, (index) => repeatedLines[(index * 11) % 5]!) +
  lines(addedCount, (index) => `appended ${index}`);

let setup: GitHubTestContext;
let runId: string;
let forkPoint: string;
let files: PullRequestFile[];

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: {
      'src/table.ts': tableAtForkPoint,
      'src/old-name.ts': oldNameText,
      'data/converted.csv': latin1Base,
      'data/shrunk.csv': shrunkBase,
      'data/shuffled.txt': shuffledBase,
      'data/reordered.txt': reorderedBase,
    },
    head: {
      'src/table.ts': tableAtHead,
      'src/old-name.ts': null,
      'src/new-name.ts': newNameText,
      'data/converted.csv': convertedText,
      'data/shrunk.csv': shrunkHead,
      'data/shuffled.txt': shuffledHead,
      'data/reordered.txt': reorderedHead,
    },
  });
  forkPoint = setup.git.baseSha;
  // The base branch moves on: it drops the legacy line, so diffing the head against the tip of
  // the base branch would report that line as added.
  const baseTip = await commitOnBranch(setup.git.dir, baseBranch, {
    'src/table.ts': `export {};\n${tail}`,
  });
  setup.fake.updatePullRequest({ owner, repo, number: prNumber }, { baseSha: baseTip });

  await insertInstallation(setup.context, { id: setup.installationId });
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: baseTip,
    status: 'queued',
  });
  runId = run.id;
  await analyzeRun(setup.context, runId, setup.context.logger);

  const octokit = await setup.context.github!.installationOctokit(setup.installationId);
  files = await listPullRequestFiles(octokit, { owner, repo, pullNumber: prNumber });
});

afterAll(async () => {
  await setup?.close();
});

function fileNamed(filename: string): PullRequestFile {
  const file = files.find((candidate) => candidate.filename === filename);
  if (!file) {
    throw new Error(`${filename} is missing from the listed files`);
  }
  return file;
}

async function fillOne(file: PullRequestFile, options: MissingPatchOptions = {}) {
  const octokit = await setup.context.github!.installationOctokit(setup.installationId);
  const target = { owner, repo, baseRef: baseBranch, headSha: setup.git.headSha };
  return fillMissingPatches(octokit, target, [file], setup.context.logger, options);
}

describe('analyzeRun of modified files without a patch', () => {
  it('gets no patch for the modified files', () => {
    expect(fileNamed('src/table.ts').patch).toBeNull();
    expect(fileNamed('src/table.ts').additions).toBe(addedCount + 1);
    expect(fileNamed('src/new-name.ts').status).toBe('renamed');
    expect(fileNamed('src/new-name.ts').previousFilename).toBe('src/old-name.ts');
    expect(fileNamed('src/new-name.ts').patch).toBeNull();
    expect(fileNamed('data/converted.csv').patch).toBeNull();
    expect(fileNamed('data/shrunk.csv').patch).toBeNull();
    expect(fileNamed('data/shuffled.txt').patch).toBeNull();
    expect(fileNamed('data/reordered.txt').patch).toBeNull();
  });

  it('finds secrets on their head lines', async () => {
    const rows = await setup.context.db
      .select()
      .from(findings)
      .where(eq(findings.runId, runId))
      .orderBy(findings.path);

    // The legacy line on line 2 of src/table.ts is unchanged since the fork point, so it has no
    // finding.
    expect(rows.map((row) => [row.path, row.startLine, row.ruleId])).toEqual([
      ['src/new-name.ts', 3001, 'secret/hardcoded-credential'],
      ['src/table.ts', addedCount + 3, 'secret/hardcoded-credential'],
    ]);
  });

  it('stores unreadable and abandoned files as unchecked', async () => {
    const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));

    expect(run?.status).toBe('completed');
    expect(run?.uncheckedFiles).toEqual(['data/converted.csv', 'data/reordered.txt']);
  });

  it('logs why a side was unreadable', () => {
    const [line] = logsOf(setup.context, 'analyze.file_unreadable', { path: 'data/converted.csv' });

    expect(line?.side).toBe('base');
    expect(line?.reason).toBe('binary');
    expect(line?.ref).toBe(forkPoint);
  });

  it('reads the merge base once', () => {
    const compares = setup.fake.requests.filter((request) => request.path.includes('/compare/'));

    expect(compares.map((request) => request.path)).toEqual([
      `/repos/${owner}/${repo}/compare/${baseBranch}...${setup.git.headSha}`,
    ]);
  });

  it('reads a renamed file under its old name', () => {
    // Octokit sends the file path as one percent-encoded segment.
    const readAt = (path: string) =>
      setup.fake.requests
        .filter((request) => {
          const requestPath = decodeURIComponent(request.path);
          return requestPath === `/repos/${owner}/${repo}/contents/${path}`;
        })
        .map((request) => request.query.ref);

    expect(readAt('src/old-name.ts')).toEqual([forkPoint]);
    expect(readAt('src/new-name.ts')).toEqual([setup.git.headSha]);
  });
});

describe('fillMissingPatches of modified files', () => {
  it('keeps a file with an oversized base unchecked', async () => {
    const file = fileNamed('data/shrunk.csv');

    const completed = await fillOne(file, { maxFileBytes: Buffer.byteLength(shrunkHead) });

    expect(completed.uncheckedPaths).toEqual(['data/shrunk.csv']);
    const [line] = logsOf(setup.context, 'analyze.file_unreadable', { path: 'data/shrunk.csv' });
    expect(line?.side).toBe('base');
    expect(line?.reason).toBe('too_large');
  });

  it('keeps a file with an oversized head unchecked', async () => {
    const file = fileNamed('src/table.ts');

    const completed = await fillOne(file, { maxFileBytes: Buffer.byteLength(tableAtForkPoint) });

    expect(completed.uncheckedPaths).toEqual(['src/table.ts']);
    const [line] = logsOf(setup.context, 'analyze.file_unreadable', { path: 'src/table.ts' });
    expect(line?.side).toBe('head');
    expect(line?.reason).toBe('too_large');
  });

  it('counts both sides against the byte limit', async () => {
    const file = fileNamed('src/table.ts');
    const bothSides = Buffer.byteLength(tableAtHead) + Buffer.byteLength(tableAtForkPoint);

    const short = await fillOne(file, { maxTotalBytes: bothSides - 1 });
    const enough = await fillOne(file, { maxTotalBytes: bothSides });

    expect(short.uncheckedPaths).toEqual(['src/table.ts']);
    expect(enough.uncheckedPaths).toEqual([]);
  });

  it('keeps a file unchecked past the edit length', async () => {
    const file = fileNamed('data/shuffled.txt');

    const abandoned = await fillOne(file, {
      diffLimits: { maxEditLength: 100, timeoutMs: 10_000 },
    });
    const finished = await fillOne(file, {
      diffLimits: { maxEditLength: 1000, timeoutMs: 10_000 },
    });

    expect(abandoned.uncheckedPaths).toEqual(['data/shuffled.txt']);
    expect(abandoned.files[0]?.patch).toBeNull();
    const [line] = logsOf(setup.context, 'analyze.diff_abandoned', { path: 'data/shuffled.txt' });
    expect(line?.maxEditLength).toBe(100);
    expect(finished.uncheckedPaths).toEqual([]);
    expect(finished.files[0]?.patch).toMatch(/^@@ -\d+,0 \+\d+,\d+ @@\n\+/);
  });

  it('keeps the event loop free during a slow diff', async () => {
    const file = fileNamed('data/reordered.txt');
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    // The histogram's timer needs a first sample before the diff, or it misses the delay.
    await new Promise((resolve) => setTimeout(resolve, 50));

    const completed = await fillOne(file);

    await new Promise((resolve) => setTimeout(resolve, 20));
    delay.disable();
    expect(completed.uncheckedPaths).toEqual(['data/reordered.txt']);
    expect(completed.files[0]?.patch).toBeNull();
    const line = logsOf(setup.context, 'analyze.diff_abandoned', { path: 'data/reordered.txt' }).at(-1);
    expect(line?.timeoutMs).toBe(1000);
    expect(line?.maxEditLength).toBe(5000);
    // On the event loop, the diff would delay it by the whole `elapsedMs`, about a second. The
    // reads from the fake GitHub stay on it, and the longest delay was 160 to 210 ms on a busy
    // 2 vCPU machine.
    const elapsedMs = Number(line?.elapsedMs);
    expect(elapsedMs).toBeGreaterThan(500);
    expect(delay.max / 1e6).toBeLessThan(elapsedMs / 2);
  });

  it('keeps a file unchecked when the diff thread crashes', async () => {
    const file = fileNamed('data/shuffled.txt');
    const diffWorker = failingDiffWorker('crash');

    const crashed = await fillOne(file, { diffWorker });
    const next = await fillOne(file, { diffWorker });
    await diffWorker.close();

    expect(crashed.uncheckedPaths).toEqual(['data/shuffled.txt']);
    expect(crashed.files[0]?.patch).toBeNull();
    const [line] = logsOf(setup.context, 'analyze.diff_failed', { path: 'data/shuffled.txt' });
    // pino's level number of warn.
    expect(line?.level).toBe(40);
    expect(line?.err).toMatchObject({
      type: 'DiffThreadError',
      message: 'the diff thread failed: the test thread crashed on purpose',
    });
    expect(next.uncheckedPaths).toEqual([]);
    expect(next.files[0]?.patch).toMatch(/^@@ -\d+,0 \+\d+,\d+ @@\n\+/);
  });

  it('abandons a diff whose thread overruns', async () => {
    const file = fileNamed('data/shuffled.txt');
    const diffWorker = failingDiffWorker('stall');
    const diffLimits = { maxEditLength: 1000, timeoutMs: 100 };

    const stalled = await fillOne(file, { diffWorker, diffLimits });
    const next = await fillOne(file, { diffWorker });
    await diffWorker.close();

    expect(stalled.uncheckedPaths).toEqual(['data/shuffled.txt']);
    const [line] = logsOf(setup.context, 'analyze.diff_abandoned', { path: 'data/shuffled.txt', timeoutMs: 100 });
    expect(line?.maxEditLength).toBe(1000);
    // The thread is terminated `terminateGraceMs` after the timeout.
    expect(line?.elapsedMs).toBeGreaterThanOrEqual(100 + terminateGraceMs - 5);
    expect(next.uncheckedPaths).toEqual([]);
  });

  it('stops waiting for a busy diff thread', async () => {
    const file = fileNamed('data/shuffled.txt');
    const diffWorker = failingDiffWorker('stall');
    // Another analysis's diff stalls the thread for 10 s and then some.
    const busy = diffWorker
      .diff('a\n', 'b\n', { maxEditLength: 1000, timeoutMs: 10_000 })
      .catch((error: unknown) => error);
    let diffRequested = false;
    const diff = diffWorker.diff.bind(diffWorker);
    diffWorker.diff = (...args) => {
      diffRequested = true;
      return diff(...args);
    };
    const stop = new AnalysisStopped('the run is superseded');
    let checks = 0;
    const checkpoint = async () => {
      checks += 1;
      if (diffRequested) throw stop;
    };
    const start = performance.now();

    const filled = fillOne(file, { diffWorker, checkpoint, checkpointIntervalMs: 100 });

    await expect(filled).rejects.toBe(stop);
    const elapsedMs = performance.now() - start;
    await diffWorker.close();
    expect(((await busy) as Error).message).toBe('the diff worker was closed');
    expect(diffRequested).toBe(true);
    // The checks before and after the merge base request and before the two reads passed.
    expect(checks).toBe(5);
    // The busy diff occupies the thread for over 10 s, and the stop did not wait for it.
    expect(elapsedMs).toBeLessThan(5_000);
  });

  it('diffs a copied file against its source', async () => {
    const file = { ...fileNamed('src/new-name.ts'), status: 'copied' };

    const completed = await fillOne(file);

    expect(completed.uncheckedPaths).toEqual([]);
    expect(completed.files[0]?.patch?.split('\n')).toContain(`+${secretLine}`);
    expect(completed.files[0]?.patch).not.toContain('+export const item3001 = 3001;');
  });

  it('diffs a file of changed type', async () => {
    const file = { ...fileNamed('src/table.ts'), status: 'changed' };

    const completed = await fillOne(file);

    expect(completed.uncheckedPaths).toEqual([]);
    expect(completed.files[0]?.patch?.split('\n')).toContain(`+${secretLine}`);
    expect(completed.files[0]?.patch).not.toContain(`+${legacyLine}`);
  });

  it('keeps a copy without its source unchecked', async () => {
    const { previousFilename: _, ...renamed } = fileNamed('src/new-name.ts');
    const file = { ...renamed, status: 'copied' };

    const completed = await fillOne(file);

    expect(completed.uncheckedPaths).toEqual(['src/new-name.ts']);
    const [line] = logsOf(setup.context, 'analyze.file_unreadable', { path: 'src/new-name.ts' });
    expect(line?.side).toBe('base');
  });

  it('rejects more added lines than GitHub counts', async () => {
    const file = { ...fileNamed('src/table.ts'), additions: 10 };

    const completed = await fillOne(file);

    expect(completed.uncheckedPaths).toEqual(['src/table.ts']);
    const [line] = logsOf(setup.context, 'analyze.diff_mismatch', { path: 'src/table.ts' });
    expect(line?.additions).toBe(addedCount + 1);
    expect(line?.githubAdditions).toBe(10);
  });

  it('keeps files unchecked without a merge base', async () => {
    setup.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/compare/*basehead',
      status: 404,
    });
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const target = { owner, repo, baseRef: baseBranch, headSha: setup.git.headSha };
    const modified = [fileNamed('src/table.ts'), fileNamed('src/new-name.ts')];

    const completed = await fillMissingPatches(octokit, target, modified, setup.context.logger);

    expect(completed.uncheckedPaths).toEqual(['src/table.ts', 'src/new-name.ts']);
    const missing = logsOf(setup.context, 'analyze.merge_base_missing');
    expect(missing).toHaveLength(1);
  });

  it('keeps files unchecked when the comparison fails', async () => {
    // GitHub responds 500 to a comparison too large to compute, and the retry plugin sends the
    // request three more times.
    for (let attempt = 0; attempt < 4; attempt += 1) {
      setup.fake.queueResponse({
        method: 'GET',
        path: '/repos/:owner/:repo/compare/*basehead',
        status: 500,
        body: { message: 'Server Error: Sorry, this diff is taking too long to generate.' },
      });
    }
    const missingBefore = logsOf(setup.context, 'analyze.merge_base_missing').length;
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const target = { owner, repo, baseRef: baseBranch, headSha: setup.git.headSha };
    const modified = [fileNamed('src/table.ts'), fileNamed('src/new-name.ts')];

    const completed = await fillMissingPatches(octokit, target, modified, setup.context.logger);

    expect(completed.uncheckedPaths).toEqual(['src/table.ts', 'src/new-name.ts']);
    const failed = logsOf(setup.context, 'analyze.merge_base_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.status).toBe(500);
    const missingAfter = logsOf(setup.context, 'analyze.merge_base_missing');
    expect(missingAfter).toHaveLength(missingBefore);
  }, 30_000);

  it('keeps files unchecked past the response limit', async () => {
    // A comparison lists up to 300 files with their patches, which can pass the limit.
    setup.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/compare/*basehead',
      status: 200,
      body: Buffer.alloc(maxGitHubResponseBytes + 1, ' '),
    });
    const failedBefore = logsOf(setup.context, 'analyze.merge_base_failed').length;
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const target = { owner, repo, baseRef: baseBranch, headSha: setup.git.headSha };
    const modified = [fileNamed('src/table.ts'), fileNamed('src/new-name.ts')];

    const completed = await fillMissingPatches(octokit, target, modified, setup.context.logger);

    expect(completed.uncheckedPaths).toEqual(['src/table.ts', 'src/new-name.ts']);
    const failed = logsOf(setup.context, 'analyze.merge_base_failed').slice(failedBefore);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.status).toBe(200);
    expect((failed[0]!.err as { type?: unknown }).type).toBe('GitHubResponseTooLargeError');
  });
});

