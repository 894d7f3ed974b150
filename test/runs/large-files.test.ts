import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { reportRun } from '../../src/report/report-run.ts';
import { listPullRequestFiles } from '../../src/github/pull-files.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import {
  fillMissingPatches,
  readLimitReason,
  type MissingPatchOptions,
} from '../../src/runs/missing-patches.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertRun,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

// GitHub sends no `patch` for a file whose diff is over 20,000 lines; the fake does the same.
const lineCount = 25_000;
const secretLine = 'export const apiKey = "k3yV4lu3Zq8w7e6r5t";';

function numberedLines(prefix: string): string {
  const lines = Array.from({ length: lineCount }, (_, index) => `${prefix}${index} = ${index};`);
  return `${lines.join('\n')}\n`;
}

// Latin-1 text: git counts its lines, but it is not UTF-8, so Fixwright rejects it once read.
const latin1Rows = Buffer.from('caf\u00e9;1\n', 'latin1');
const legacyHead = `caf\u00e9;1\n${numberedLines('row')}`;
// Bytes that reading data/legacy.csv takes from the run's read limit: its UTF-8 head, then its
// Latin-1 version at the merge base, which is read and rejected.
const legacyReadBytes = Buffer.byteLength(legacyHead) + latin1Rows.length;

let setup: GitHubTestContext;
let runId: string;

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/table.ts': 'export {};\n', 'data/legacy.csv': latin1Rows },
    head: {
      'data/legacy.csv': legacyHead,
      'data/seed.ts': `${numberedLines('export const seed')}${secretLine}\n`,
      'src/table.ts': `export {};\n${numberedLines('export const row')}${secretLine}\n`,
      'logo.png': Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]),
    },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
    status: 'queued',
  });
  runId = run.id;
  await analyzeRun(setup.context, runId, setup.context.logger);
});

afterAll(async () => {
  await setup?.close();
});

async function storedRun() {
  const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return stored!;
}

// Files that GitHub lists without a patch, in the order in which they are read.
const pathsWithoutPatch = ['data/legacy.csv', 'data/seed.ts', 'src/table.ts', 'logo.png'];

/** Fills in the missing patches of the pull request within the given read limits. */
async function fillWithLimits(options: MissingPatchOptions) {
  const octokit = await setup.context.github!.installationOctokit(setup.installationId);
  const files = await listPullRequestFiles(octokit, { owner, repo, pullNumber: prNumber });
  const target = { owner, repo, baseRef: 'main', headSha: setup.git.headSha };
  return fillMissingPatches(octokit, target, files, setup.context.logger, options);
}

describe('analyzeRun of files without a patch', () => {
  it('gets no patch for files over the diff limit', async () => {
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const { data } = await octokit.rest.pulls.listFiles({ owner, repo, pull_number: prNumber });
    const byName = new Map(data.map((file) => [file.filename, file]));
    expect(byName.get('data/seed.ts')?.patch).toBeUndefined();
    expect(byName.get('data/seed.ts')?.additions).toBe(lineCount + 1);
    expect(byName.get('src/table.ts')?.patch).toBeUndefined();
    expect(byName.get('src/table.ts')?.additions).toBe(lineCount + 1);
    expect(byName.get('data/legacy.csv')?.patch).toBeUndefined();
    expect(byName.get('logo.png')?.patch).toBeUndefined();
    expect(byName.get('logo.png')?.additions).toBe(0);
  });

  it('checks added and modified files', async () => {
    const rows = await setup.context.db
      .select()
      .from(findings)
      .where(eq(findings.runId, runId))
      .orderBy(findings.path);
    expect(rows.map((row) => [row.path, row.startLine, row.ruleId])).toEqual([
      ['data/seed.ts', lineCount + 1, 'secret/hardcoded-credential'],
      ['src/table.ts', lineCount + 2, 'secret/hardcoded-credential'],
    ]);
  });

  it('stores the unreadable file as unchecked', async () => {
    const run = await storedRun();
    expect(run.status).toBe('completed');
    expect(run.uncheckedFiles).toEqual(['data/legacy.csv', 'logo.png']);
    expect(run.uncheckedFileReasons).toEqual([{ path: 'logo.png', reason: 'binary file, not checked' }]);
    expect(run.unlistedFiles).toBe(0);
  });

  it('names unchecked files in the report', async () => {
    await reportRun(setup.context, runId, setup.context.logger);

    const checkRun = setup.fake.checkRuns.find((candidate) => candidate.externalId === runId)!;
    const note =
      'GitHub sent no diff for 1 file with added lines and Fixwright could not build one (for ' +
      'example for a version over 5 MB or not UTF-8 text), so its added lines were not ' +
      'checked: `data/legacy.csv`.';
    const binaryNote = 'The added lines of 1 file were not checked: `logo.png` (binary file, not checked).';
    expect(checkRun.output.summary).toContain(note);
    expect(checkRun.output.summary).toContain(binaryNote);
    const comment = setup.fake.issueComments.at(-1)!;
    expect(comment.body).toContain(note);
    expect(comment.body).toContain(binaryNote);
  });

  it('stops reading files past the byte limit', async () => {
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const files = await listPullRequestFiles(octokit, { owner, repo, pullNumber: prNumber });
    const target = { owner, repo, baseRef: 'main', headSha: setup.git.headSha };

    const completed = await fillMissingPatches(octokit, target, files, setup.context.logger, {
      maxTotalBytes: 100_000,
    });

    expect(completed.uncheckedPaths).toEqual([
      'data/legacy.csv',
      'data/seed.ts',
      'src/table.ts',
      'logo.png',
    ]);
    const seed = completed.files.find((file) => file.filename === 'data/seed.ts');
    expect(seed?.patch).toBeNull();
  });

  it('names files past the read limit', async () => {
    const completed = await fillWithLimits({ maxTotalBytes: legacyReadBytes });

    const reason = "not read: the run's read limit of 0.4 MB was reached";
    expect(readLimitReason(legacyReadBytes)).toBe(reason);
    expect(completed.uncheckedPaths).toEqual(pathsWithoutPatch);
    expect(completed.uncheckedReasons).toEqual([
      { path: 'data/seed.ts', reason },
      { path: 'src/table.ts', reason },
      { path: 'logo.png', reason },
    ]);
  });

  it('names a file over the bytes left', async () => {
    const maxTotalBytes = legacyReadBytes + 1_000;

    const completed = await fillWithLimits({ maxTotalBytes });

    const reason = readLimitReason(maxTotalBytes);
    expect(completed.uncheckedReasons).toEqual([
      { path: 'data/seed.ts', reason },
      { path: 'src/table.ts', reason },
      { path: 'logo.png', reason: 'binary file, not checked' },
    ]);
  });

  it('keeps the file limit reason', async () => {
    // data/legacy.csv fits the file limit, so the bytes left after it are under the file limit,
    // and the other two files are over both.
    const completed = await fillWithLimits({
      maxTotalBytes: legacyReadBytes + 1_000,
      maxFileBytes: legacyReadBytes,
    });

    expect(completed.uncheckedPaths).toEqual(pathsWithoutPatch);
    expect(completed.uncheckedReasons).toEqual([
      { path: 'logo.png', reason: 'binary file, not checked' },
    ]);
  });
});
