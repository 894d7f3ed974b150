import { execFile } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileReadError, readFileAtRef } from '../../src/github/file-content.ts';
import { UnexpectedGitHubAnswerError } from '../../src/github/github-response.ts';
import { gitEnvironment, headBranch } from '../../src/demo/git-repository.ts';
import { owner, repo, requestsTo, startHarness, type Harness } from './harness.ts';

const execFileAsync = promisify(execFile);

/** 1.5 MB of text: over the 1 MB the contents API returns inline. */
const largeText = 'abcdefghijklmnopqrstuvwxyz0123456789\n'.repeat(42_000);
const binary = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x01]);
/** Valid UTF-8 with one NUL after the first 8000 bytes, where git's own check stops looking. */
const lateNul = `${'text line\n'.repeat(900)}tail\0end\n`;

let harness: Harness;

const htmlPage = {
  headers: { 'content-type': 'text/html' },
  body: '<html><body>Service Unavailable</body></html>',
};

async function readAt(filePath: string, ref: string, maxBytes?: number) {
  return readFileAtRef(harness.octokit, { owner, repo, path: filePath, ref, maxBytes });
}

async function blobSha(revision: string): Promise<string> {
  const { stdout } = await execFileAsync(
    'git',
    ['-C', harness.repository.dir, 'rev-parse', revision],
    { env: gitEnvironment() },
  );
  return stdout.trim();
}

/**
 * Builds a contents response for crlf.txt on main that states its 15 bytes but sends `content`
 * as its base64, or no content field when `content` is undefined.
 */
async function crlfContents(content: string | undefined) {
  const body: Record<string, unknown> = {
    type: 'file',
    encoding: 'base64',
    size: 15,
    name: 'crlf.txt',
    path: 'crlf.txt',
    sha: await blobSha('main:crlf.txt'),
  };
  if (content !== undefined) body.content = Buffer.from(content).toString('base64');
  return { method: 'GET', path: '/repos/:owner/:repo/contents/*path', status: 200, body };
}

function contentsTooLarge() {
  return {
    method: 'GET',
    path: '/repos/:owner/:repo/contents/*path',
    status: 403,
    body: {
      message:
        'This API returns blobs up to 1 MB in size. The requested blob is too large to fetch ' +
        'via the API, but you can use the Git Data API to request blobs up to 100 MB in size.',
      errors: [{ resource: 'Blob', field: 'data', code: 'too_large' }],
      documentation_url: 'https://docs.github.com/rest/repos/contents#get-repository-content',
    },
  };
}

async function readError(filePath: string, ref: string, maxBytes?: number) {
  const error = await readAt(filePath, ref, maxBytes).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(FileReadError);
  return error as FileReadError;
}

/** Commits a symlink and a submodule entry on branch `links`, which git cannot take from files. */
async function commitLinksBranch(dir: string): Promise<void> {
  const git = (args: string[]) =>
    execFileAsync(
      'git',
      ['-c', 'user.name=Test', '-c', 'user.email=test@fixwright.invalid', '-C', dir, ...args],
      { env: gitEnvironment() },
    );
  await git(['checkout', '--quiet', '-b', 'links']);
  await symlink('crlf.txt', path.join(dir, 'link-to-file'));
  await symlink('docs', path.join(dir, 'link-to-dir'));
  await mkdir(path.join(dir, 'docs'), { recursive: true });
  await writeFile(
    path.join(dir, '.gitmodules'),
    '[submodule "vendor/lib"]\n\tpath = vendor/lib\n\turl = https://git.example/lib.git\n',
  );
  await git(['add', '--all']);
  await git([
    'update-index',
    '--add',
    '--cacheinfo',
    `160000,${harness.repository.baseSha},vendor/lib`,
  ]);
  await git(['commit', '--quiet', '--no-verify', '-m', 'Add links']);
  await git(['checkout', '--quiet', 'main']);
}

beforeAll(async () => {
  harness = await startHarness({
    base: {
      'crlf.txt': 'first\r\nsecond\r\n',
      'no-final-newline.txt': 'alpha\nbeta',
      'bom.txt': '\uFEFFheading\n',
      'empty.txt': '',
      'image.png': binary,
      'late-nul.txt': lateNul,
      'latin1.txt': Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]),
      'docs/guide.md': '# Guide\n',
      'docs/spaced name.md': 'spaces\n',
      'large.txt': largeText,
    },
    head: { 'crlf.txt': 'first\r\nchanged\r\n' },
  });
  await commitLinksBranch(harness.repository.dir);
});

afterAll(async () => {
  await harness?.close();
});

describe('readFileAtRef', () => {
  it('keeps CRLF line endings byte for byte', async () => {
    const file = await readAt('crlf.txt', harness.repository.baseSha);
    expect(file?.text).toBe('first\r\nsecond\r\n');
    expect(file?.size).toBe(15);
  });

  it('keeps a missing final newline', async () => {
    const file = await readAt('no-final-newline.txt', harness.repository.baseSha);
    expect(file?.text).toBe('alpha\nbeta');
  });

  it('keeps a byte order mark', async () => {
    const file = await readAt('bom.txt', 'main');
    expect(file?.text).toBe('\uFEFFheading\n');
    expect(file?.text.charCodeAt(0)).toBe(0xfeff);
    expect(file?.size).toBe(11);
  });

  it('reads an empty file', async () => {
    const file = await readAt('empty.txt', 'main');
    expect(file).toEqual({
      text: '',
      blobSha: 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391',
      size: 0,
    });
  });

  it('returns the blob sha git stores', async () => {
    const file = await readAt('crlf.txt', harness.repository.baseSha);
    const { stdout } = await execFileAsync(
      'git',
      ['-C', harness.repository.dir, 'rev-parse', `${harness.repository.baseSha}:crlf.txt`],
      { env: gitEnvironment() },
    );
    expect(file?.blobSha).toBe(stdout.trim());
  });

  it('reads the version at the given ref', async () => {
    const atBase = await readAt('crlf.txt', harness.repository.baseSha);
    const atHead = await readAt('crlf.txt', harness.repository.headSha);
    const atBranch = await readAt('crlf.txt', headBranch);
    expect(atBase?.text).toBe('first\r\nsecond\r\n');
    expect(atHead?.text).toBe('first\r\nchanged\r\n');
    expect(atBranch?.text).toBe('first\r\nchanged\r\n');
  });

  it('reads a nested path with a space', async () => {
    const file = await readAt('docs/spaced name.md', 'main');
    expect(file?.text).toBe('spaces\n');
  });

  it('returns null for a missing file', async () => {
    expect(await readAt('missing.txt', 'main')).toBeNull();
  });

  it('returns null for an unknown ref', async () => {
    expect(await readAt('crlf.txt', 'no-such-branch')).toBeNull();
  });

  it('rejects a binary file', async () => {
    const error = await readError('image.png', 'main');
    expect(error.reason).toBe('binary');
    expect(error.path).toBe('image.png');
  });

  it('rejects a NUL after byte 8000 as binary', async () => {
    expect(Buffer.byteLength(lateNul)).toBeGreaterThan(9000);
    const error = await readError('late-nul.txt', 'main');
    expect(error.reason).toBe('binary');
    expect(error.message).toContain('contains a NUL byte');
  });

  it('rejects text that is not UTF-8 as binary', async () => {
    const error = await readError('latin1.txt', 'main');
    expect(error.reason).toBe('binary');
    expect(error.message).toContain('not valid UTF-8');
  });

  it('rejects a directory', async () => {
    const error = await readError('docs', 'main');
    expect(error.reason).toBe('directory');
  });

  it('rejects a file over maxBytes', async () => {
    const error = await readError('crlf.txt', 'main', 10);
    expect(error.reason).toBe('too_large');
    expect(error.message).toContain('15 bytes');
  });

  it('rejects a file over the default limit', async () => {
    const before = requestsTo(harness.fake, 'GET', /\/git\/blobs\//).length;
    const error = await readError('large.txt', 'main');
    expect(error.reason).toBe('too_large');
    expect(requestsTo(harness.fake, 'GET', /\/git\/blobs\//)).toHaveLength(before);
  });

  it('reads a file over 1 MB through the blob API', async () => {
    const before = requestsTo(harness.fake, 'GET', /\/git\/blobs\//).length;
    const file = await readAt('large.txt', 'main', 2_000_000);
    expect(file?.size).toBe(Buffer.byteLength(largeText));
    expect(file?.text).toBe(largeText);
    const blobRequests = requestsTo(harness.fake, 'GET', /\/git\/blobs\//);
    expect(blobRequests).toHaveLength(before + 1);
    expect(blobRequests.at(-1)?.path).toBe(`/repos/${owner}/${repo}/git/blobs/${file?.blobSha}`);
  });

  it('reads a file over 1 MB after a 403', async () => {
    // Octokit users reported this 403 for files over 1 MB from 2014 to 2025, where the current
    // REST docs describe a response without content instead.
    harness.fake.queueResponse(contentsTooLarge());
    const file = await readAt('large.txt', 'main', 2_000_000);
    expect(file?.size).toBe(Buffer.byteLength(largeText));
    expect(file?.text).toBe(largeText);
  });

  it('rejects a 403 file over maxBytes', async () => {
    harness.fake.queueResponse(contentsTooLarge());
    const error = await readError('large.txt', 'main');
    expect(error.reason).toBe('too_large');
  });

  it('reads a file sent without its content field', async () => {
    harness.fake.queueResponse(await crlfContents(undefined));
    const file = await readAt('crlf.txt', 'main');
    expect(file?.text).toBe('first\r\nsecond\r\n');
  });

  it('reads a cut-off file through the blob API', async () => {
    harness.fake.queueResponse(await crlfContents('first'));
    const file = await readAt('crlf.txt', 'main');
    expect(file?.text).toBe('first\r\nsecond\r\n');
  });

  it('reads a blob sent as UTF-8 text', async () => {
    const sha = await blobSha('main:crlf.txt');
    harness.fake.queueResponse(await crlfContents(undefined));
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/git/blobs/:file_sha',
      status: 200,
      body: { sha, size: 15, encoding: 'utf-8', content: 'first\r\nsecond\r\n' },
    });
    const file = await readAt('crlf.txt', 'main');
    expect(file?.text).toBe('first\r\nsecond\r\n');
  });

  it.each([
    ['without content', { encoding: 'base64' }, 'content: Invalid input: expected string, received undefined'],
    [
      'of another encoding',
      { encoding: 'latin1', content: 'first' },
      'encoding: Invalid option: expected one of "base64"|"utf-8"',
    ],
    ["as a proxy's HTML page", htmlPage.body, 'body: Invalid input: expected object, received string'],
  ])('rejects a blob %s', async (_case, body, problem) => {
    const sha = await blobSha('main:crlf.txt');
    harness.fake.queueResponse(await crlfContents(undefined));
    const headers = typeof body === 'string' ? htmlPage.headers : undefined;
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/git/blobs/:file_sha',
      status: 200,
      body: typeof body === 'string' ? body : { sha, size: 15, ...body },
      headers,
    });

    const error = await readAt('crlf.txt', 'main').catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(UnexpectedGitHubAnswerError);
    expect(error).toMatchObject({
      method: 'GET',
      path: `/repos/${owner}/${repo}/git/blobs/${sha}`,
      status: 200,
      problem,
    });
  });

  it.each([
    ["a proxy's HTML page", () => htmlPage.body, 'body: Invalid input: expected object, received string'],
    [
      'an unknown type',
      (served: Record<string, unknown>) => ({ ...served, type: 'dir' }),
      "type: Invalid discriminator value. Expected 'file' | 'symlink' | 'submodule'",
    ],
    [
      'a file without its sha',
      (served: Record<string, unknown>) => ({ ...served, sha: undefined }),
      'sha: Invalid input: expected string, received undefined',
    ],
    [
      'a file with its size as a string',
      (served: Record<string, unknown>) => ({ ...served, size: '15' }),
      'size: Invalid input: expected number, received string',
    ],
    [
      'a file without its encoding',
      (served: Record<string, unknown>) => ({ ...served, encoding: undefined }),
      'encoding: Invalid input: expected string, received undefined',
    ],
  ])('rejects contents as %s', async (_case, change, problem) => {
    const served = (await crlfContents('first\r\nsecond\r\n')).body;
    const body = change(served);
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/contents/*path',
      status: 200,
      body,
      headers: typeof body === 'string' ? htmlPage.headers : undefined,
    });
    const blobRequests = requestsTo(harness.fake, 'GET', /\/git\/blobs\//).length;

    const error = await readAt('crlf.txt', 'main').catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(UnexpectedGitHubAnswerError);
    expect(error).toMatchObject({
      method: 'GET',
      path: `/repos/${owner}/${repo}/contents/crlf.txt`,
      status: 200,
      problem,
    });
    // No blob is requested with a sha taken from an invalid response, such as `undefined`.
    expect(requestsTo(harness.fake, 'GET', /\/git\/blobs\//)).toHaveLength(blobRequests);
  });

  it('rejects a file cut off by both APIs', async () => {
    const sha = await blobSha('main:crlf.txt');
    harness.fake.queueResponse(await crlfContents('first'));
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/git/blobs/:file_sha',
      status: 200,
      body: { sha, size: 15, encoding: 'base64', content: Buffer.from('first').toString('base64') },
    });
    const error = await readError('crlf.txt', 'main');
    expect(error.reason).toBe('truncated');
    expect(error.message).toContain('15 bytes');
  });

  it('reads a symlink to a file as that file', async () => {
    const file = await readAt('link-to-file', 'links');
    expect(file?.text).toBe('first\r\nsecond\r\n');
  });

  it('rejects a symlink to a directory', async () => {
    const error = await readError('link-to-dir', 'links');
    expect(error.reason).toBe('symlink');
  });

  it('rejects a submodule', async () => {
    const error = await readError('vendor/lib', 'links');
    expect(error.reason).toBe('submodule');
  });

  it('raises other HTTP errors', async () => {
    harness.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/contents/*path',
      status: 422,
    });
    const error = await readAt('crlf.txt', 'main').catch((caught: unknown) => caught);
    expect(error).not.toBeInstanceOf(FileReadError);
    expect((error as { status?: number }).status).toBe(422);
  });

  it('uses the installation token', async () => {
    await readAt('crlf.txt', 'main');
    const last = requestsTo(harness.fake, 'GET', /\/contents\//).at(-1);
    const tokens = harness.fake.issuedTokens.map((issued) => `token ${issued.token}`);
    expect(tokens).toContain(last?.headers.authorization);
  });
});
