import { execFile } from 'node:child_process';
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

/** Returns a file's hunks without the `diff --git` header lines, as GitHub's `patch` field. */
function hunksOf(chunk: string): string | null {
  const start = chunk.indexOf('\n@@ ');
  if (start === -1) {
    return null;
  }
  const hunks = chunk.slice(start + 1);
  return hunks.endsWith('\n') ? hunks.slice(0, -1) : hunks;
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
