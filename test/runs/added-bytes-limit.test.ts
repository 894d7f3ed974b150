import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listPullRequestFiles } from '../../src/github/pull-files.ts';
import { fillMissingPatches } from '../../src/runs/missing-patches.ts';
import {
  createGitHubTestContext,
  owner,
  prNumber,
  repo,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

// Over GitHub's 20,000-line diff limit, so the fake sends no patch for these added files.
const lineCount = 25_000;

// Latin-1 text: git counts its added lines, but it is not UTF-8, so Fixwright rejects it once read.
const latin1 = Buffer.from(
  Array.from({ length: lineCount }, (_, index) => `caf\u00e9 ${index}\n`).join(''),
  'latin1',
);
const seed = Array.from(
  { length: lineCount },
  (_, index) => `export const seed${index} = ${index};\n`,
).join('');

let setup: GitHubTestContext;

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# Widgets\n' },
    head: { 'a-latin1.txt': latin1, 'b-seed.ts': seed },
  });
});

afterAll(async () => {
  await setup?.close();
});

describe('fillMissingPatches byte limit', () => {
  it('counts files read and rejected', async () => {
    const octokit = await setup.context.github!.installationOctokit(setup.installationId);
    const files = await listPullRequestFiles(octokit, { owner, repo, pullNumber: prNumber });
    const target = { owner, repo, baseRef: 'main', headSha: setup.git.headSha };
    const seedBytes = Buffer.byteLength(seed);

    // The Latin-1 file is downloaded in full before it is rejected, so what is left after it
    // is one byte short of the seed file.
    const completed = await fillMissingPatches(octokit, target, files, setup.context.logger, {
      maxTotalBytes: latin1.length + seedBytes - 1,
    });

    expect(completed.uncheckedPaths).toEqual(['a-latin1.txt', 'b-seed.ts']);
    const seedFile = completed.files.find((file) => file.filename === 'b-seed.ts');
    expect(seedFile?.patch).toBeNull();
  });
});
