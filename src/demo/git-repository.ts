import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface GitRepository {
  /** Working tree of the repository, with `main` (the base commit) checked out. */
  dir: string;
  baseSha: string;
  headSha: string;
  cleanup(): Promise<void>;
}

/** Branch with the base commit. The head commit is on `headBranch`. */
export const baseBranch = 'main';
export const headBranch = 'feature';

/**
 * Environment for every git command run against test and demo repositories: it ignores the
 * user's and the system's git configuration and fixes the commit dates, so commit shas are
 * reproducible.
 */
export function gitEnvironment(date = '2024-01-01T00:00:00Z'): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_DATE: date,
    GIT_COMMITTER_DATE: date,
    GIT_TERMINAL_PROMPT: '0',
  };
}

const configFlags = [
  '-c',
  'user.name=Fixwright Test',
  '-c',
  'user.email=test@fixwright.invalid',
  '-c',
  'core.autocrlf=false',
  '-c',
  'core.safecrlf=false',
  '-c',
  'commit.gpgsign=false',
];

async function git(dir: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', [...configFlags, '-C', dir, ...args], {
    env: gitEnvironment(),
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

/** Quotes a path for git fast-import, which reads an unquoted path up to the end of line. */
function quotePath(filePath: string): string {
  if (filePath.startsWith('/') || filePath.split('/').includes('..')) {
    const quoted = JSON.stringify(filePath);
    throw new Error(`Invalid repository path ${quoted}: use a relative path inside the repository`);
  }
  const escaped = filePath.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return `"${escaped}"`;
}

/** Builds a fast-import `commit` command. `mark` and `parent` are fast-import mark numbers. */
/** File content, or content with a git file mode such as `100755` for an executable. */
export type FileValue = string | Buffer | { content: string | Buffer; mode: '100644' | '100755' };

function commitCommand(
  commit: { branch: string; mark: number; parent?: number; message: string; epochSeconds: number },
  files: Record<string, FileValue | null>,
): Buffer[] {
  const { branch, mark, parent, message, epochSeconds } = commit;
  const identity = `Fixwright Test <test@fixwright.invalid> ${epochSeconds} +0000`;
  const header = [
    `commit refs/heads/${branch}`,
    `mark :${mark}`,
    `author ${identity}`,
    `committer ${identity}`,
    `data ${Buffer.byteLength(message)}`,
    message,
    ...(parent === undefined ? [] : [`from :${parent}`]),
  ];
  const parts: Buffer[] = [Buffer.from(header.join('\n') + '\n')];
  for (const [name, content] of Object.entries(files)) {
    if (content === null) {
      parts.push(Buffer.from(`D ${quotePath(name)}\n`));
      continue;
    }
    // Inline data keeps the bytes exactly: no newline or encoding conversion happens here.
    const { data, mode } =
      typeof content === 'string' || Buffer.isBuffer(content)
        ? { data: content, mode: '100644' }
        : { data: content.content, mode: content.mode };
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    parts.push(Buffer.from(`M ${mode} inline ${quotePath(name)}\ndata ${bytes.length}\n`));
    parts.push(bytes, Buffer.from('\n'));
  }
  parts.push(Buffer.from('\n'));
  return parts;
}

/** Streams commands to `git fast-import`, which writes all objects in one process. */
function fastImport(dir: string, stream: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', [...configFlags, '-C', dir, 'fast-import', '--quiet', '--done'], {
      env: gitEnvironment(),
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    const errors: Buffer[] = [];
    child.stderr.on('data', (chunk: Buffer) => errors.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) {
        resolve();
      } else {
        const detail = Buffer.concat(errors).toString('utf8').trim();
        reject(new Error(`git fast-import failed with exit code ${code}: ${detail}`));
      }
    });
    child.stdin.end(Buffer.concat([...stream, Buffer.from('done\n')]));
  });
}

/**
 * Creates a real git repository in a temporary folder: `base` is committed on `main`, then
 * `head` is applied on top of it on `feature` and committed (a `null` value deletes the file).
 * Commits are written with `git fast-import`, which stores bytes as given, so CRLF line endings
 * and missing final newlines survive. The working tree ends with `main` checked out.
 */
export async function createGitRepository(options: {
  base: Record<string, FileValue>;
  head: Record<string, FileValue | null>;
  /** Folder that gets the repository's folder. Default: the system's temporary folder. */
  parentDir?: string;
}): Promise<GitRepository> {
  const dir = await mkdtemp(path.join(options.parentDir ?? os.tmpdir(), 'fixwright-git-'));
  try {
    await git(dir, ['init', '--quiet', `--initial-branch=${baseBranch}`]);
    const baseEpoch = Date.parse('2024-01-01T00:00:00Z') / 1000;
    const base = { branch: baseBranch, mark: 1, message: 'Base commit', epochSeconds: baseEpoch };
    const head = {
      branch: headBranch,
      mark: 2,
      parent: 1,
      message: 'Head commit',
      epochSeconds: baseEpoch + 60,
    };
    await fastImport(dir, [
      ...commitCommand(base, options.base),
      ...commitCommand(head, options.head),
    ]);

    const baseSha = (await git(dir, ['rev-parse', baseBranch])).trim();
    const headSha = (await git(dir, ['rev-parse', headBranch])).trim();
    // Fill the working tree with the base files, so tests can commit more on top of them.
    await git(dir, ['checkout', '--quiet', '--force', baseBranch]);

    return {
      dir,
      baseSha,
      headSha,
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Opens a repository that createGitRepository made in `dir`, with the commits added since, such
 * as an apply's commit on `feature`. `baseSha` and `headSha` are the tips of `main` and `feature`.
 */
export async function openGitRepository(dir: string): Promise<GitRepository> {
  const baseSha = (await git(dir, ['rev-parse', '--verify', `${baseBranch}^{commit}`])).trim();
  const headSha = (await git(dir, ['rev-parse', '--verify', `${headBranch}^{commit}`])).trim();
  return { dir, baseSha, headSha, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Commits `files` on top of `branch` (a `null` value deletes the file) and returns the new
 * commit's sha. The working tree is left on `main`.
 */
export async function commitOnBranch(
  dir: string,
  branch: string,
  files: Record<string, string | null>,
  message = 'Another commit',
): Promise<string> {
  await git(dir, ['checkout', '--quiet', '--force', branch]);
  try {
    for (const [name, content] of Object.entries(files)) {
      const target = path.join(dir, name);
      if (content === null) {
        await git(dir, ['rm', '--quiet', '--', name]);
        continue;
      }
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, content);
      await git(dir, ['add', '--', name]);
    }
    await git(dir, ['commit', '--quiet', '--allow-empty', '-m', message]);
    return (await git(dir, ['rev-parse', 'HEAD'])).trim();
  } finally {
    await git(dir, ['checkout', '--quiet', '--force', baseBranch]);
  }
}
