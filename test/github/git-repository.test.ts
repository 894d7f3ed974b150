import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createGitRepository,
  gitEnvironment,
  type GitRepository,
} from '../../src/demo/git-repository.ts';

const execFileAsync = promisify(execFile);
const created: GitRepository[] = [];

async function create(files: Parameters<typeof createGitRepository>[0]) {
  const repository = await createGitRepository(files);
  created.push(repository);
  return repository;
}

async function show(repository: GitRepository, object: string): Promise<Buffer> {
  const { stdout } = await execFileAsync(
    'git',
    ['-C', repository.dir, 'cat-file', 'blob', object],
    { env: gitEnvironment(), encoding: 'buffer' },
  );
  return stdout;
}

async function listFiles(repository: GitRepository, commit: string): Promise<string[]> {
  const { stdout } = await execFileAsync(
    'git',
    ['-C', repository.dir, 'ls-tree', '-r', '-z', '--name-only', commit],
    { env: gitEnvironment() },
  );
  return stdout.split('\0').filter((name) => name !== '');
}

afterEach(async () => {
  for (const repository of created.splice(0)) {
    await repository.cleanup();
  }
});

describe('createGitRepository', () => {
  it('stores bytes exactly', async () => {
    const binary = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80]);
    const repository = await create({
      base: { 'crlf.txt': 'a\r\nb\r\n', 'bare.txt': 'no newline', 'data.bin': binary },
      head: {},
    });
    expect((await show(repository, 'main:crlf.txt')).toString('utf8')).toBe('a\r\nb\r\n');
    expect((await show(repository, 'main:bare.txt')).toString('utf8')).toBe('no newline');
    expect((await show(repository, 'main:data.bin')).equals(binary)).toBe(true);
  });

  it('applies head changes on the feature branch', async () => {
    const repository = await create({
      base: { 'keep.txt': 'keep\n', 'drop.txt': 'drop\n', 'edit.txt': 'old\n' },
      head: { 'drop.txt': null, 'edit.txt': 'new\n', 'dir/added.txt': 'added\n' },
    });
    expect(await listFiles(repository, repository.baseSha)).toEqual([
      'drop.txt',
      'edit.txt',
      'keep.txt',
    ]);
    expect(await listFiles(repository, repository.headSha)).toEqual([
      'dir/added.txt',
      'edit.txt',
      'keep.txt',
    ]);
    expect((await show(repository, 'feature:edit.txt')).toString('utf8')).toBe('new\n');
    const { stdout } = await execFileAsync(
      'git',
      ['-C', repository.dir, 'rev-parse', `${repository.headSha}^`],
      { env: gitEnvironment() },
    );
    expect(stdout.trim()).toBe(repository.baseSha);
  });

  it('checks out the base in the working tree', async () => {
    const repository = await create({
      base: { 'base.txt': 'base\r\n' },
      head: { 'head.txt': 'head\n' },
    });
    expect(await readFile(path.join(repository.dir, 'base.txt'), 'utf8')).toBe('base\r\n');
    await expect(access(path.join(repository.dir, 'head.txt'))).rejects.toThrow();
  });

  it('produces the same shas for the same files', async () => {
    const files = { base: { 'a.txt': 'a\n' }, head: { 'b.txt': 'b\n' } };
    const first = await create(files);
    const second = await create(files);
    expect(second.baseSha).toBe(first.baseSha);
    expect(second.headSha).toBe(first.headSha);
    expect(first.headSha).not.toBe(first.baseSha);
  });

  it('accepts paths with spaces and quotes', async () => {
    const repository = await create({
      base: { 'docs/with space.md': 'x\n', 'say "hi".txt': 'hi\n' },
      head: {},
    });
    expect(await listFiles(repository, repository.baseSha)).toEqual([
      'docs/with space.md',
      'say "hi".txt',
    ]);
  });

  it('rejects paths outside the repository', async () => {
    await expect(create({ base: { '../escape.txt': 'x' }, head: {} })).rejects.toThrow(
      /relative path inside the repository/,
    );
  });

  it('removes the folder on cleanup', async () => {
    const repository = await createGitRepository({ base: { 'a.txt': 'a\n' }, head: {} });
    await repository.cleanup();
    await expect(access(repository.dir)).rejects.toThrow();
  });
});
