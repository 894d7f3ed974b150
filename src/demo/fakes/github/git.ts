import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Reads objects, trees and diffs from a real git repository for the fake GitHub API. */

/** Entry of a git tree as `git ls-tree -l` prints it. */
export interface TreeEntry {
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  sha: string;
  /** Blob size in bytes, or `null` for trees and submodules. */
  size: number | null;
  /** Path from the repository root. */
  path: string;
}

/** One changed file between two commits, as `pulls/:number/files` reports it. */
export interface DiffEntry {
  status: 'added' | 'removed' | 'modified' | 'renamed' | 'copied' | 'changed';
  filename: string;
  previousFilename?: string;
  oldSha: string;
  newSha: string;
  additions: number;
  deletions: number;
  binary: boolean;
  /** Hunks from the first `@@` line on, without the trailing newline, or null without hunks. */
  patch: string | null;
}

const gitEnvironment: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_TERMINAL_PROMPT: '0',
};

/** Runs git (never through a shell) with pathspecs taken literally, and returns stdout bytes. */
export function runGit(gitDir: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['--literal-pathspecs', '-c', 'core.quotePath=false', '-C', gitDir, ...args],
      { env: gitEnvironment, encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const detail = stderr.toString('utf8').trim();
          const message = `git ${args.join(' ')} failed in ${gitDir}: ${detail}`;
          reject(new Error(message, { cause: error }));
          return;
        }
        resolve(stdout);
      },
    );
  });
}

/** Resolves a branch, tag or sha to a commit sha, or null when git does not know the ref. */
export async function resolveCommit(gitDir: string, ref: string): Promise<string | null> {
  if (ref === '' || ref.startsWith('-')) {
    return null;
  }
  try {
    const output = await runGit(gitDir, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
    return output.toString('utf8').trim();
  } catch {
    return null;
  }
}

/** Returns the best common ancestor of two commits, or null when they have none. */
export async function readMergeBase(
  gitDir: string,
  left: string,
  right: string,
): Promise<string | null> {
  try {
    return (await runGit(gitDir, ['merge-base', left, right])).toString('utf8').trim();
  } catch {
    // git merge-base exits with status 1 when the commits share no history.
    return null;
  }
}

/** Lists the commits reachable from `head` but not from `base`, oldest first. */
export async function listCommitsBetween(
  gitDir: string,
  base: string,
  head: string,
): Promise<string[]> {
  const output = await runGit(gitDir, ['rev-list', '--reverse', head, `^${base}`]);
  return output.toString('utf8').split('\n').filter((line) => line !== '');
}

/** Returns the short name of the branch HEAD points to, which GitHub calls the default branch. */
export async function readDefaultBranch(gitDir: string): Promise<string> {
  const output = await runGit(gitDir, ['symbolic-ref', '--short', 'HEAD']);
  return output.toString('utf8').trim();
}

function parseTree(output: Buffer): TreeEntry[] {
  const entries: TreeEntry[] = [];
  for (const record of output.toString('utf8').split('\0')) {
    if (record === '') {
      continue;
    }
    const tab = record.indexOf('\t');
    const [mode = '', type = '', sha = '', size = '-'] = record.slice(0, tab).split(/ +/);
    entries.push({
      mode,
      type: type as TreeEntry['type'],
      sha,
      size: size === '-' ? null : Number(size),
      path: record.slice(tab + 1),
    });
  }
  return entries;
}

/** Returns the tree entry at `filePath` in `commit`, or null when nothing is there. */
export async function readTreeEntry(
  gitDir: string,
  commit: string,
  filePath: string,
): Promise<TreeEntry | null> {
  const output = await runGit(gitDir, ['ls-tree', '-l', '-z', commit, '--', filePath]);
  return parseTree(output).find((entry) => entry.path === filePath) ?? null;
}

/** Lists the entries of the directory `dirPath` ('' for the root) in `commit`. */
export async function listDirectory(
  gitDir: string,
  commit: string,
  dirPath: string,
): Promise<TreeEntry[]> {
  const pathspec = dirPath === '' ? [] : ['--', `${dirPath}/`];
  const output = await runGit(gitDir, ['ls-tree', '-l', '-z', commit, ...pathspec]);
  return parseTree(output);
}

/** Returns the bytes of a blob, or null when `sha` names no blob. */
export async function readBlob(gitDir: string, sha: string): Promise<Buffer | null> {
  if (!/^[0-9a-f]{40}$/.test(sha)) {
    return null;
  }
  try {
    const type = (await runGit(gitDir, ['cat-file', '-t', sha])).toString('utf8').trim();
    if (type !== 'blob') {
      return null;
    }
  } catch {
    return null;
  }
  return runGit(gitDir, ['cat-file', 'blob', sha]);
}

/**
 * Resolves the target of a symlink stored at `linkPath` to a repository path, or returns null
 * when the target leaves the repository.
 */
export function resolveSymlinkTarget(linkPath: string, target: string): string | null {
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(linkPath), target));
  if (resolved.startsWith('../') || resolved === '..' || path.posix.isAbsolute(target)) {
    return null;
  }
  return resolved;
}

const diffFlags = ['--no-color', '--no-ext-diff', '--no-textconv', '--find-renames'];

const statusNames: Record<string, DiffEntry['status']> = {
  A: 'added',
  D: 'removed',
  M: 'modified',
  R: 'renamed',
  C: 'copied',
  T: 'changed',
};

interface RawRecord {
  status: DiffEntry['status'];
  oldSha: string;
  newSha: string;
  filename: string;
  previousFilename?: string;
}

function parseRaw(output: Buffer): RawRecord[] {
  const fields = output.toString('utf8').split('\0');
  const records: RawRecord[] = [];
  let index = 0;
  while (index < fields.length && fields[index] !== '') {
    // Header fields: ":oldMode newMode oldSha newSha status[score]".
    const [, , oldSha = '', newSha = '', statusField = ''] = (fields[index] ?? '').split(' ');
    const letter = statusField.charAt(0);
    const status = statusNames[letter];
    if (!status) {
      throw new Error(`Unexpected git diff status ${statusField}`);
    }
    if (letter === 'R' || letter === 'C') {
      records.push({
        status,
        oldSha,
        newSha,
        previousFilename: fields[index + 1] ?? '',
        filename: fields[index + 2] ?? '',
      });
      index += 3;
    } else {
      records.push({ status, oldSha, newSha, filename: fields[index + 1] ?? '' });
      index += 2;
    }
  }
  return records;
}

interface LineCounts {
  additions: number;
  deletions: number;
  binary: boolean;
}

function parseNumstat(output: Buffer): LineCounts[] {
  const fields = output.toString('utf8').split('\0');
  const counts: LineCounts[] = [];
  let index = 0;
  while (index < fields.length && fields[index] !== '') {
    const [added = '', deleted = '', filename = ''] = (fields[index] ?? '').split('\t');
    const binary = added === '-';
    counts.push({
      additions: binary ? 0 : Number(added),
      deletions: binary ? 0 : Number(deleted),
      binary,
    });
    // A rename prints an empty name here, followed by the old and new names as two fields.
    index += filename === '' ? 3 : 1;
  }
  return counts;
}

/** Splits `git diff -p` output into one chunk per file, in the same order as `--raw`. */
function splitPatches(output: Buffer): string[] {
  const text = output.toString('utf8');
  if (text === '') {
    return [];
  }
  return text.split(/^diff --git /m).slice(1);
}

/**
 * GitHub's repository limits page: "No single file's diff may exceed 20,000 lines that you can
 * load or 500 KB of raw diff data", and most of those limits apply to the API too.
 * NOTE: whether the API counts the limit on the hunks alone or with the file headers is unverified.
 */
export const maxFileDiffLines = 20_000;
export const maxFileDiffBytes = 500 * 1024;

/**
 * Returns a file's hunks without the `diff --git` header lines, as GitHub's `patch` field, or
 * null when there are none or they are over GitHub's diff limit for one file.
 */
function hunksOf(chunk: string): string | null {
  const start = chunk.indexOf('\n@@ ');
  if (start === -1) {
    return null;
  }
  const hunks = chunk.slice(start + 1);
  const patch = hunks.endsWith('\n') ? hunks.slice(0, -1) : hunks;
  const lineCount = patch.split('\n').length;
  if (lineCount > maxFileDiffLines || Buffer.byteLength(patch) > maxFileDiffBytes) {
    return null;
  }
  return patch;
}

/**
 * Lists the files changed between the merge base of `baseSha` and `headSha`, and `headSha`, the
 * way GitHub compares a pull request.
 */
export async function diffCommits(
  gitDir: string,
  baseSha: string,
  headSha: string,
): Promise<DiffEntry[]> {
  const mergeBaseOutput = await runGit(gitDir, ['merge-base', baseSha, headSha]);
  const mergeBase = mergeBaseOutput.toString('utf8').trim();
  const range = [mergeBase, headSha];
  const [raw, numstat, patch] = await Promise.all([
    runGit(gitDir, ['diff', ...diffFlags, '--raw', '-z', '--no-abbrev', ...range]),
    runGit(gitDir, ['diff', ...diffFlags, '--numstat', '-z', ...range]),
    runGit(gitDir, ['diff', ...diffFlags, '--patch', ...range]),
  ]);
  const records = parseRaw(raw);
  const counts = parseNumstat(numstat);
  const chunks = splitPatches(patch);
  if (counts.length !== records.length || chunks.length !== records.length) {
    throw new Error(
      `git diff outputs disagree: ${records.length} raw, ${counts.length} numstat, ` +
        `${chunks.length} patch entries`,
    );
  }

  return records.map((record, index) => {
    const count = counts[index] ?? { additions: 0, deletions: 0, binary: false };
    const chunk = chunks[index] ?? '';
    const entry: DiffEntry = {
      status: record.status,
      filename: record.filename,
      oldSha: record.oldSha,
      newSha: record.newSha,
      additions: count.additions,
      deletions: count.deletions,
      binary: count.binary,
      patch: count.binary ? null : hunksOf(chunk),
    };
    if (record.previousFilename !== undefined) {
      entry.previousFilename = record.previousFilename;
    }
    return entry;
  });
}

/**
 * Runs git with `input` on stdin and extra environment variables, and returns stdout bytes.
 * Rejects with git's stderr when it exits non-zero.
 */
export function runGitWithInput(
  gitDir: string,
  args: string[],
  input: Buffer | string,
  env: NodeJS.ProcessEnv = {},
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-C', gitDir, ...args], {
      env: { ...gitEnvironment, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) {
        resolve(Buffer.concat(stdout));
        return;
      }
      const detail = Buffer.concat(stderr).toString('utf8').trim();
      const command = `git ${args.join(' ')}`;
      reject(new Error(`${command} failed in ${gitDir} with exit code ${code}: ${detail}`));
    });
    // Commands such as `write-tree` exit without reading stdin; their exit code still counts.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** Returns the type of the object `sha` names (`blob`, `tree`, `commit`, `tag`), or null. */
export async function objectType(gitDir: string, sha: string): Promise<string | null> {
  if (!/^[0-9a-f]{40}$/.test(sha)) {
    return null;
  }
  try {
    return (await runGit(gitDir, ['cat-file', '-t', sha])).toString('utf8').trim();
  } catch {
    return null;
  }
}

/** Stores `bytes` as a blob with `git hash-object -w` and returns its sha. */
export async function writeBlob(gitDir: string, bytes: Buffer): Promise<string> {
  const output = await runGitWithInput(gitDir, ['hash-object', '-w', '--stdin'], bytes);
  return output.toString('utf8').trim();
}

/** Resolves a tree, commit, branch or tag to the sha of its tree, or null. */
export async function resolveTree(gitDir: string, ref: string): Promise<string | null> {
  if (ref === '' || ref.startsWith('-')) {
    return null;
  }
  try {
    const output = await runGit(gitDir, ['rev-parse', '--verify', '--quiet', `${ref}^{tree}`]);
    return output.toString('utf8').trim();
  } catch {
    return null;
  }
}

/** Lists a tree: its own entries, or with `recursive` every entry below it, trees included. */
export async function listTree(
  gitDir: string,
  treeSha: string,
  recursive: boolean,
): Promise<TreeEntry[]> {
  const flags = recursive ? ['-r', '-t'] : [];
  return parseTree(await runGit(gitDir, ['ls-tree', '-l', '-z', ...flags, treeSha]));
}

/** Change to one path of a tree: a new mode and blob, or `sha: null` to delete the path. */
export interface TreeChange {
  path: string;
  mode: string;
  sha: string | null;
}

/**
 * Writes a tree that is `baseTree` (or an empty tree) with `changes` applied, using a temporary
 * index, so changes to nested paths create the intermediate trees as GitHub does.
 */
export async function writeTree(
  gitDir: string,
  baseTree: string | null,
  changes: TreeChange[],
): Promise<string> {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'fake-github-index-'));
  const env = { GIT_INDEX_FILE: path.join(folder, 'index') };
  try {
    const readArgs = baseTree ? ['read-tree', baseTree] : ['read-tree', '--empty'];
    await runGitWithInput(gitDir, readArgs, '', env);
    const lines = changes.map((change) =>
      change.sha === null
        ? `0 ${'0'.repeat(40)}\t${change.path}`
        : `${change.mode} ${change.sha}\t${change.path}`,
    );
    if (lines.length > 0) {
      const input = lines.join('\0') + '\0';
      await runGitWithInput(gitDir, ['update-index', '-z', '--index-info'], input, env);
    }
    return (await runGitWithInput(gitDir, ['write-tree'], '', env)).toString('utf8').trim();
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/** Identity of a commit's author or committer, with an ISO 8601 date. */
export interface GitIdentity {
  name: string;
  email: string;
  date: string;
}

export interface CommitObject {
  sha: string;
  tree: string;
  parents: string[];
  author: GitIdentity;
  committer: GitIdentity;
  message: string;
}

/** Writes a commit with `git commit-tree` and returns its sha. */
export async function writeCommit(
  gitDir: string,
  commit: Omit<CommitObject, 'sha'>,
): Promise<string> {
  const parentArgs = commit.parents.flatMap((parent) => ['-p', parent]);
  const env = {
    GIT_AUTHOR_NAME: commit.author.name,
    GIT_AUTHOR_EMAIL: commit.author.email,
    GIT_AUTHOR_DATE: commit.author.date,
    GIT_COMMITTER_NAME: commit.committer.name,
    GIT_COMMITTER_EMAIL: commit.committer.email,
    GIT_COMMITTER_DATE: commit.committer.date,
  };
  const args = ['commit-tree', commit.tree, ...parentArgs];
  const output = await runGitWithInput(gitDir, args, commit.message, env);
  return output.toString('utf8').trim();
}

function parseIdentity(line: string): GitIdentity {
  const match = /^(.*) <(.*)> (\d+) ([+-]\d{4})$/.exec(line);
  if (!match) {
    throw new Error(`Unexpected git identity line ${JSON.stringify(line)}`);
  }
  const date = new Date(Number(match[3]) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return { name: match[1] ?? '', email: match[2] ?? '', date };
}

/** Reads a commit object, or returns null when `sha` names no commit. */
export async function readCommit(gitDir: string, sha: string): Promise<CommitObject | null> {
  if ((await objectType(gitDir, sha)) !== 'commit') {
    return null;
  }
  const text = (await runGit(gitDir, ['cat-file', 'commit', sha])).toString('utf8');
  const split = text.indexOf('\n\n');
  const headers = (split === -1 ? text : text.slice(0, split)).split('\n');
  const commit: CommitObject = {
    sha,
    tree: '',
    parents: [],
    author: { name: '', email: '', date: '' },
    committer: { name: '', email: '', date: '' },
    message: split === -1 ? '' : text.slice(split + 2),
  };
  for (const header of headers) {
    const space = header.indexOf(' ');
    const key = header.slice(0, space);
    const value = header.slice(space + 1);
    if (key === 'tree') commit.tree = value;
    if (key === 'parent') commit.parents.push(value);
    if (key === 'author') commit.author = parseIdentity(value);
    if (key === 'committer') commit.committer = parseIdentity(value);
  }
  return commit;
}

/** Returns the raw text of commit `sha`, as `git cat-file commit` prints it. */
export async function commitText(gitDir: string, sha: string): Promise<string> {
  return (await runGit(gitDir, ['cat-file', 'commit', sha])).toString('utf8');
}

/** Returns the sha a full ref name such as `refs/heads/main` points to, or null. */
export async function readRef(gitDir: string, ref: string): Promise<string | null> {
  try {
    const output = await runGit(gitDir, ['rev-parse', '--verify', '--quiet', ref]);
    return output.toString('utf8').trim();
  } catch {
    return null;
  }
}

/** Returns whether `ancestor` is `descendant` or one of its ancestors. */
export async function isAncestor(
  gitDir: string,
  ancestor: string,
  descendant: string,
): Promise<boolean> {
  try {
    await runGit(gitDir, ['merge-base', '--is-ancestor', ancestor, descendant]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Moves `ref` to `newSha` only while it still points to `oldSha` (`git update-ref` with the old
 * value), so a concurrent move makes this fail instead of being overwritten. Returns whether
 * the ref moved.
 */
export async function compareAndSwapRef(
  gitDir: string,
  ref: string,
  newSha: string,
  oldSha: string,
): Promise<boolean> {
  try {
    await runGit(gitDir, ['update-ref', ref, newSha, oldSha]);
    return true;
  } catch {
    return false;
  }
}
