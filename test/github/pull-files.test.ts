import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listPullRequestFiles,
  maxListedPullRequestFiles,
  type PullRequestFile,
} from '../../src/github/pull-files.ts';
import { secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { UnexpectedGitHubAnswerError } from '../../src/github/github-response.ts';
import {
  owner,
  pullNumber,
  repo,
  repositoryId,
  requestsTo,
  startHarness,
  type Harness,
} from './harness.ts';

const addedCount = 150;

function addedFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (let index = 0; index < addedCount; index += 1) {
    const name = `src/generated/file-${String(index).padStart(3, '0')}.ts`;
    files[name] = `export const n = ${index};\n`;
  }
  return files;
}

let harness: Harness;
let files: PullRequestFile[];

function fileNamed(filename: string): PullRequestFile {
  const file = files.find((candidate) => candidate.filename === filename);
  if (!file) {
    throw new Error(`${filename} is missing from the listed files`);
  }
  return file;
}

beforeAll(async () => {
  harness = await startHarness({
    base: {
      'modified.txt': 'one\ntwo\nthree\n',
      'crlf.txt': 'first\r\nsecond\r\n',
      'no-final-newline.txt': 'alpha\nbeta',
      'removed.txt': 'gone soon\n',
      'old-name.md': 'This paragraph is long enough to be detected as the same file.\nline two\n',
    },
    head: {
      ...addedFiles(),
      'modified.txt': 'one\n2\nthree\n',
      'crlf.txt': 'first\r\nchanged\r\n',
      'no-final-newline.txt': 'alpha\ngamma',
      'removed.txt': null,
      'old-name.md': null,
      'new-name.md': 'This paragraph is long enough to be detected as the same file.\nline two\n',
      'logo.png': Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00, 0x00, 0x0d]),
    },
  });
  files = await listPullRequestFiles(harness.octokit, { owner, repo, pullNumber });
});

afterAll(async () => {
  await harness?.close();
});

describe('listPullRequestFiles', () => {
  it('returns every file across pages', () => {
    expect(files).toHaveLength(addedCount + 6);
    expect(new Set(files.map((file) => file.filename)).size).toBe(files.length);
    expect(fileNamed('src/generated/file-149.ts').status).toBe('added');
  });

  it('follows the link header to the second page', () => {
    const pages = requestsTo(harness.fake, 'GET', /\/pulls\/\d+\/files$/);
    expect(pages).toHaveLength(2);
    expect(pages[0]?.path).toBe(`/repos/${owner}/${repo}/pulls/${pullNumber}/files`);
    expect(pages[0]?.query).toEqual({ per_page: '100' });
    expect(pages[1]?.path).toBe(`/repositories/${repositoryId}/pulls/${pullNumber}/files`);
    expect(pages[1]?.query).toEqual({ per_page: '100', page: '2' });
  });

  it('reports a modified file with its patch', () => {
    expect(fileNamed('modified.txt')).toEqual({
      filename: 'modified.txt',
      status: 'modified',
      patch: '@@ -1,3 +1,3 @@\n one\n-two\n+2\n three',
      sha: expect.stringMatching(/^[0-9a-f]{40}$/),
      additions: 1,
      deletions: 1,
    });
  });

  it('keeps carriage returns in the patch', () => {
    expect(fileNamed('crlf.txt').patch).toBe(
      '@@ -1,2 +1,2 @@\n first\r\n-second\r\n+changed\r',
    );
  });

  it('marks a missing final newline in the patch', () => {
    expect(fileNamed('no-final-newline.txt').patch).toBe(
      '@@ -1,2 +1,2 @@\n alpha\n-beta\n\\ No newline at end of file\n+gamma\n' +
        '\\ No newline at end of file',
    );
  });

  it('reports a removed file', () => {
    const removed = fileNamed('removed.txt');
    expect(removed.status).toBe('removed');
    expect(removed.deletions).toBe(1);
    expect(removed.additions).toBe(0);
    expect(removed.patch).toBe('@@ -1 +0,0 @@\n-gone soon');
  });

  it('reports a rename with the previous name', () => {
    const renamed = fileNamed('new-name.md');
    expect(renamed.status).toBe('renamed');
    expect(renamed.previousFilename).toBe('old-name.md');
    expect(renamed.additions).toBe(0);
    expect(renamed.deletions).toBe(0);
    expect(renamed.patch).toBeNull();
    expect(files.some((file) => file.filename === 'old-name.md')).toBe(false);
  });

  it('omits the patch of a binary file', () => {
    const binary = fileNamed('logo.png');
    expect(binary.status).toBe('added');
    expect(binary.patch).toBeNull();
    expect(binary.additions).toBe(0);
  });

  it('sets previousFilename only for renames', () => {
    const withPrevious = files.filter((file) => file.previousFilename !== undefined);
    expect(withPrevious.map((file) => file.filename)).toEqual(['new-name.md']);
  });

  it('returns the head blob sha', async () => {
    const { data } = await harness.octokit.rest.repos.getContent({
      owner,
      repo,
      path: 'modified.txt',
      ref: harness.repository.headSha,
    });
    expect(Array.isArray(data)).toBe(false);
    expect(fileNamed('modified.txt').sha).toBe((data as { sha: string }).sha);
  });
});

describe('listPullRequestFiles with a checkpoint', () => {
  it('checks between pages only', async () => {
    const since = harness.fake.requests.length;
    let checks = 0;

    const listed = await listPullRequestFiles(
      harness.octokit,
      { owner, repo, pullNumber },
      {
        checkpoint: async () => {
          checks += 1;
        },
      },
    );

    expect(listed).toEqual(files);
    expect(checks).toBe(1);
    const pages = requestsTo(harness.fake, 'GET', /\/pulls\/\d+\/files$/).filter(
      (request) => harness.fake.requests.indexOf(request) >= since,
    );
    expect(pages.map((page) => page.query.page)).toEqual([undefined, '2']);
  });

  it('requests no page after a failed check', async () => {
    const since = harness.fake.requests.length;
    const stop = new Error('the run is superseded');

    const listing = listPullRequestFiles(
      harness.octokit,
      { owner, repo, pullNumber },
      {
        checkpoint: async () => {
          throw stop;
        },
      },
    );

    await expect(listing).rejects.toBe(stop);
    const pages = requestsTo(harness.fake, 'GET', /\/pulls\/\d+\/files$/).filter(
      (request) => harness.fake.requests.indexOf(request) >= since,
    );
    expect(pages.map((page) => page.query.page)).toEqual([undefined]);
  });
});

describe('listPullRequestFiles with an invalid page', () => {
  const secondPage = /^\/repositories\/\d+\/pulls\/\d+\/files$/;
  const cases: [string, { headers?: Record<string, string>; body: unknown }, string][] = [
    [
      'a mistyped field',
      { body: [{ filename: 'a.ts', status: 'added', sha: null, additions: '1', deletions: 0 }] },
      '0.additions: Invalid input: expected number, received string',
    ],
    // octokit.paginate read an empty body as a page without files.
    [
      'an empty body',
      { headers: { 'content-type': 'text/plain' }, body: '' },
      'body: Invalid input: expected array, received string',
    ],
  ];

  it.each(cases)('names the page with %s', async (_name, page, problem) => {
    harness.fake.queueResponse({ method: 'GET', path: secondPage, status: 200, ...page });

    const listing = listPullRequestFiles(harness.octokit, { owner, repo, pullNumber });

    const error = await listing.then(
      () => null,
      (rejection: unknown) => rejection,
    );
    expect(error).toBeInstanceOf(UnexpectedGitHubAnswerError);
    expect(error).toMatchObject({
      method: 'GET',
      path: `/repositories/${repositoryId}/pulls/${pullNumber}/files`,
      status: 200,
      message: problem,
    });
  });
});

describe('listPullRequestFiles with rate limits', () => {
  it('retries a rate-limited second page', async () => {
    const base = { 'README.md': '# Limited\n' };
    const limited = await startHarness({ base, head: addedFiles() });
    try {
      limited.fake.queueResponse(
        secondaryRateLimitError('GET', /^\/repositories\/\d+\/pulls\/\d+\/files$/, 1),
      );
      const listed = await listPullRequestFiles(limited.octokit, { owner, repo, pullNumber });
      expect(listed).toHaveLength(addedCount);
      const pages = requestsTo(limited.fake, 'GET', /\/pulls\/\d+\/files$/);
      expect(pages.map((page) => page.query.page)).toEqual([undefined, '2', '2']);
    } finally {
      await limited.close();
    }
  });
});

describe('listPullRequestFiles on a huge pull request', () => {
  it('stops at the 3000 files GitHub lists', async () => {
    const head: Record<string, string> = {};
    for (let index = 0; index < maxListedPullRequestFiles + 5; index += 1) {
      head[`data/item-${String(index).padStart(4, '0')}.txt`] = `${index}\n`;
    }
    const huge = await startHarness({ base: { 'README.md': '# Huge\n' }, head });
    try {
      const listed = await listPullRequestFiles(huge.octokit, { owner, repo, pullNumber });
      expect(listed).toHaveLength(maxListedPullRequestFiles);
      expect(listed.at(-1)?.filename).toBe('data/item-2999.txt');
      expect(requestsTo(huge.fake, 'GET', /\/pulls\/\d+\/files$/)).toHaveLength(30);
    } finally {
      await huge.close();
    }
  });
});
