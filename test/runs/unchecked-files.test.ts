import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings, prRuns } from '../../src/db/schema/index.ts';
import { omissionNotes } from '../../src/report/summary-markdown.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import { invalidPathReason, nulNameReason } from '../../src/runs/file-names.ts';
import { binaryFileReason } from '../../src/runs/missing-patches.ts';
import { owner, pullNumber, repo, requestsTo } from '../github/harness.ts';
import { logsOf } from '../helpers/context.ts';
import { createAnalyzeTestContext, type AnalyzeTestContext } from './analyze-context.ts';

const filesPath = `/repos/${owner}/${repo}/pulls/${pullNumber}/files`;
const secretLine = 'export const apiKey = "k3yV4lu3Zq8w7e6r5t";';
// Git, and so GitHub, takes a file with a NUL byte in its first 8,000 bytes for binary.
const textWithNul = Buffer.from(`${secretLine}\n// \0 marker\n`, 'utf8');

let setup: AnalyzeTestContext;

beforeAll(async () => {
  setup = await createAnalyzeTestContext({
    base: { 'README.md': '# Widgets\n' },
    head: {
      'README.md': '# Widgets\n',
      'src/a.ts': `${secretLine}\n`,
      'src/config.ts': textWithNul,
      'empty.txt': '',
    },
  });
});

afterAll(async () => {
  await setup?.close();
});

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

async function findingPaths(runId: string): Promise<string[]> {
  const rows = await setup.context.db
    .select({ path: findings.path })
    .from(findings)
    .where(eq(findings.runId, runId));
  return rows.map((row) => row.path).sort();
}

/** Analyzes a new run, checks that it completed and returns it as stored. */
async function analyzeNewRun() {
  const run = await setup.createRun();
  const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);

  expect(outcome.status).toBe('completed');
  const stored = await storedRun(run.id);
  expect(stored.status).toBe('completed');
  expect(stored.error).toBeNull();
  return { run, stored };
}

describe('analysis unchecked files', () => {
  it('lists a text file with NUL as binary', async () => {
    const { data } = await setup.harness.octokit.request(`GET ${filesPath}`);
    const listed = (data as any[]).find((file) => file.filename === 'src/config.ts');
    expect(listed.patch).toBeUndefined();
    expect(listed.additions).toBe(0);

    const run = await setup.createRun();
    const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);

    expect(outcome.status).toBe('completed');
    const stored = await storedRun(run.id);
    expect(stored.uncheckedFiles).toEqual(['src/config.ts']);
    expect(stored.uncheckedFileReasons).toEqual([{ path: 'src/config.ts', reason: binaryFileReason }]);
    expect(await findingPaths(run.id)).toEqual(['src/a.ts']);
    expect(omissionNotes(stored)).toEqual([
      `The added lines of 1 file were not checked: \`src/config.ts\` (${binaryFileReason}).`,
    ]);
  });

  it('skips a file name with NUL', async () => {
    const { data } = await setup.harness.octokit.request(`GET ${filesPath}`);
    const served = data as any[];
    const source = served.find((file) => file.filename === 'src/a.ts');
    const body = [...served, { ...source, filename: 'src/a\u0000b.ts' }];
    setup.harness.fake.queueResponse({ method: 'GET', path: filesPath, status: 200, body });

    const { run, stored } = await analyzeNewRun();
    expect(stored.uncheckedFiles).toEqual(['src/config.ts', 'src/a\uFFFDb.ts']);
    expect(stored.uncheckedFileReasons).toEqual([
      { path: 'src/config.ts', reason: binaryFileReason },
      { path: 'src/a\uFFFDb.ts', reason: nulNameReason },
    ]);
    expect(await findingPaths(run.id)).toEqual(['src/a.ts']);
    const warnings = logsOf(setup.context, 'analyze.nul_file_name');
    expect(warnings.at(-1)).toMatchObject({ path: 'src/a\uFFFDb.ts', status: 'added' });
    expect(omissionNotes(stored)).toEqual([
      'The added lines of 2 files were not checked: `src/config.ts` (binary file, not checked) ' +
        'and `src/a\uFFFDb.ts` (file name with a NUL character, shown as U+FFFD, not checked).',
    ]);
  });

  it('skips invalid file names', async () => {
    const { data } = await setup.harness.octokit.request(`GET ${filesPath}`);
    const served = data as any[];
    const source = served.find((file) => file.filename === 'src/a.ts');
    // Names that git never stores. Each has added lines and no patch, so it would be read.
    const invalidNames = ['..', '.', 'src/../a.ts', './a.ts', '/src/a.ts', 'src//a.ts', 'src/'];
    const unread = invalidNames.map((filename) => ({ ...source, filename, patch: undefined }));
    // A patch is checked without a read, but its findings would name the invalid path.
    const withPatch = { ...source, filename: 'lib/../a.ts' };
    const renamed = { ...source, status: 'renamed', filename: 'b.ts', previous_filename: '..' };
    const body = [...served, ...unread, withPatch, { ...renamed, patch: undefined }];
    setup.harness.fake.queueResponse({ method: 'GET', path: filesPath, status: 200, body });
    // The URL of a read of `..` resolves to the repository's own path, whose response is no file.
    const repositoryPath = new RegExp(`^/repos/${owner}/${repo}/$`);
    const repositoryBody = { id: 1, name: repo, full_name: `${owner}/${repo}` };
    setup.harness.fake.queueResponse({
      method: 'GET',
      path: repositoryPath,
      status: 200,
      body: repositoryBody,
    });
    const requestsBefore = setup.harness.fake.requests.length;

    const { run, stored } = await analyzeNewRun();
    const invalidPaths = [...invalidNames, 'lib/../a.ts', 'b.ts'];
    expect(stored.uncheckedFiles).toEqual(['src/config.ts', ...invalidPaths]);
    expect(stored.uncheckedFileReasons).toEqual([
      { path: 'src/config.ts', reason: binaryFileReason },
      ...invalidPaths.map((path) => ({ path, reason: invalidPathReason })),
    ]);
    expect(await findingPaths(run.id)).toEqual(['src/a.ts']);
    const reads = setup.harness.fake.requests
      .slice(requestsBefore)
      .filter((request) => request.method === 'GET' && !request.path.includes('/pulls/'))
      .map((request) => request.path);
    expect(reads).not.toContain(`/repos/${owner}/${repo}/`);
    expect(reads.filter((path) => path.includes('/contents/'))).toEqual([
      `/repos/${owner}/${repo}/contents/empty.txt`,
      `/repos/${owner}/${repo}/contents/src%2Fconfig.ts`,
    ]);
    const warnings = logsOf(setup.context, 'analyze.invalid_file_name');
    expect(warnings.at(-1)).toMatchObject({ path: 'b.ts', previousPath: '..', status: 'renamed' });
    expect(requestsTo(setup.harness.fake, 'GET', /\.\./)).toEqual([]);
  });

  it('stores a base ref with NUL', async () => {
    const pullPath = `/repos/${owner}/${repo}/pulls/${pullNumber}`;
    const { data } = await setup.harness.octokit.request(`GET ${pullPath}`);
    const served = data as any;
    const baseRef = served.base.ref as string;
    const body = { ...served, base: { ...served.base, ref: `${baseRef}\u0000` } };
    setup.harness.fake.queueResponse({ method: 'GET', path: pullPath, status: 200, body });

    const run = await setup.createRun();
    const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);

    expect(outcome.status).toBe('completed');
    const stored = await storedRun(run.id);
    expect(stored.baseRef).toBe(baseRef);
    expect(await findingPaths(run.id)).toEqual(['src/a.ts']);
  });
});
