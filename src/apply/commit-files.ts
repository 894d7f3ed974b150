import type { Octokit } from '@octokit/rest';
import { TreeReader } from '../github/tree-reader.ts';
import { UnexpectedGitHubAnswerError } from '../github/github-response.ts';

/** Raised when the head branch no longer points to the commit the preview was made on. */
export class BranchMovedError extends Error {
  override name = 'BranchMovedError';
}

/** Raised when a previewed file is missing or is not a regular file at the previewed commit. */
export class PreviewOutdatedError extends Error {
  override name = 'PreviewOutdatedError';
}

export interface CommitTarget {
  owner: string;
  repo: string;
  /** Branch name without `refs/heads/`. */
  branch: string;
  /** The previewed head commit; the new commit's only parent. */
  parentSha: string;
  message: string;
}

export interface CommitFile {
  path: string;
  /** The whole new file, written byte for byte as UTF-8. */
  content: string;
}

/** File modes a fix may keep: a regular file or an executable one. */
const fileModes = new Set(['100644', '100755']);

/** Returns the mode of `path` in the tree that `reader` reads. */
async function readFileMode(reader: TreeReader, path: string): Promise<string> {
  const entry = await reader.find(path);
  if (!entry) {
    throw new PreviewOutdatedError(
      `${path} does not exist at the previewed commit; regenerate the preview.`,
    );
  }
  if (entry.type === 'blob' && entry.mode && fileModes.has(entry.mode)) return entry.mode;
  throw new PreviewOutdatedError(
    `${path} is not a regular file at the previewed commit (mode ${entry.mode}); ` +
      'only regular and executable files can be committed.',
  );
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown }).status;
  return error instanceof Error && typeof status === 'number' ? status : undefined;
}

function isUnprocessable(error: unknown, message: string): boolean {
  return statusOf(error) === 422 && (error as Error).message.includes(message);
}

/**
 * Returns true when a failed ref update may have lost a race with a push or with an earlier attempt:
 * 422 (not a fast forward, or "Reference update failed"), 409, or a server error after which the
 * update may still have happened. Such failures are decided by reading the ref.
 */
function mayHaveMoved(error: unknown): boolean {
  const status = statusOf(error);
  return status === 409 || status === 422 || (status !== undefined && status >= 500);
}

/**
 * Writes `files` as one commit on `target.branch` through the Git Data API and returns its sha.
 * It creates a blob per file, a tree on top of the parent's tree that keeps each file's mode, a
 * commit whose only parent is `target.parentSha`, and updates the ref without force. The ref is
 * read first, and BranchMovedError is raised unless it still points to the parent. When GitHub
 * rejects the update with 409, 422 or a server error, the ref is read again: BranchMovedError is
 * raised when it points elsewhere, and GitHub's error is raised again when it has not moved.
 */
export async function commitFiles(
  octokit: Octokit,
  target: CommitTarget,
  files: readonly CommitFile[],
): Promise<{ commitSha: string; recovered: boolean }> {
  const repository = { owner: target.owner, repo: target.repo };
  const { data: parent } = await octokit.rest.git.getCommit({
    ...repository,
    commit_sha: target.parentSha,
  });
  if (typeof parent?.tree?.sha !== 'string') {
    const path = `/repos/${target.owner}/${target.repo}/git/commits/${target.parentSha}`;
    throw new UnexpectedGitHubAnswerError('GET', path, 'tree.sha: expected a string');
  }
  const reader = new TreeReader(octokit, repository, parent.tree.sha);
  const entries = [];
  for (const file of files) {
    const mode = await readFileMode(reader, file.path);
    // Base64 keeps the bytes exact: CRLF line endings and a missing final newline survive.
    const { data: blob } = await octokit.rest.git.createBlob({
      ...repository,
      content: Buffer.from(file.content, 'utf8').toString('base64'),
      encoding: 'base64',
    });
    entries.push({
      path: file.path,
      mode: mode as '100644' | '100755',
      type: 'blob' as const,
      sha: blob.sha,
    });
  }
  const { data: tree } = await octokit.rest.git.createTree({
    ...repository,
    base_tree: parent.tree.sha,
    tree: entries,
  });
  const { data: commit } = await octokit.rest.git.createCommit({
    ...repository,
    message: target.message,
    tree: tree.sha,
    parents: [target.parentSha],
  });

  const ref = `heads/${target.branch}`;
  const change = { treeSha: tree.sha, parentSha: target.parentSha };
  // A non-forced update takes any fast forward. After a force push back to an ancestor of the
  // previewed commit, the update would bring back the commits that the push dropped, so the
  // branch must still point to the previewed commit.
  // NOTE: GitHub's REST API cannot update a ref only if it still points to a given commit, so
  // such a force push between this read and the update is not detected.
  let before;
  try {
    before = await readBranchTip(octokit, repository, ref, change);
  } catch (error) {
    if (statusOf(error) !== 404) throw error;
    throw deletedError(target);
  }
  if (before.sameChange) return { commitSha: before.sha, recovered: true };
  if (before.sha !== target.parentSha) throw movedError(target, before.sha);

  let updateError: unknown;
  try {
    // No automatic retries: after a failure the ref itself shows whether the update happened.
    await octokit.rest.git.updateRef({
      ...repository,
      ref,
      sha: commit.sha,
      force: false,
      request: { retries: 0 },
    });
    return { commitSha: commit.sha, recovered: false };
  } catch (error) {
    if (isUnprocessable(error, 'Reference does not exist')) throw deletedError(target);
    if (!mayHaveMoved(error)) throw error;
    updateError = error;
  }

  // An earlier attempt may have moved the branch to the same change before it was recorded.
  const after = await readBranchTip(octokit, repository, ref, change);
  if (after.sameChange) return { commitSha: after.sha, recovered: true };
  if (after.sha === target.parentSha) throw updateError;
  throw movedError(target, after.sha);
}

/**
 * Returns `commitSha` when it is a commit that an earlier apply made: its only parent is
 * `parentSha` and its message contains `marker`. Returns null for any other commit.
 */
export async function findPushedCommit(
  octokit: Octokit,
  target: { owner: string; repo: string; commitSha: string; parentSha: string; marker: string },
): Promise<string | null> {
  const { data: commit } = await octokit.rest.git.getCommit({
    owner: target.owner,
    repo: target.repo,
    commit_sha: target.commitSha,
  });
  const parents = commit.parents ?? [];
  if (parents.length !== 1 || parents[0]?.sha !== target.parentSha) return null;
  return (commit.message ?? '').includes(target.marker) ? target.commitSha : null;
}

function deletedError(target: CommitTarget): BranchMovedError {
  return new BranchMovedError(
    `Branch ${target.branch} no longer exists in ${target.owner}/${target.repo}.`,
  );
}

function movedError(target: CommitTarget, currentSha: string): BranchMovedError {
  return new BranchMovedError(
    `Branch ${target.branch} moved from ${target.parentSha} to ${currentSha} since the preview.`,
  );
}

/**
 * Reads the commit the branch points to, and whether that commit is the change itself: the
 * tree `change.treeSha` on the only parent `change.parentSha`.
 */
async function readBranchTip(
  octokit: Octokit,
  repository: { owner: string; repo: string },
  ref: string,
  change: { treeSha: string; parentSha: string },
): Promise<{ sha: string; sameChange: boolean }> {
  const { data: current } = await octokit.rest.git.getRef({ ...repository, ref });
  const sha = current.object.sha;
  if (sha === change.parentSha) return { sha, sameChange: false };
  const { data: tip } = await octokit.rest.git.getCommit({ ...repository, commit_sha: sha });
  const sameChange =
    tip.tree.sha === change.treeSha &&
    tip.parents.length === 1 &&
    tip.parents[0]?.sha === change.parentSha;
  return { sha, sameChange };
}
