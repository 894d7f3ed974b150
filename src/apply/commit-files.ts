import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import type { AppBotUser, AppIdentity } from '../github/app-identity.ts';
import {
  gitObjectSha,
  parseGitHubResponse,
  requestPath,
  UnexpectedGitHubAnswerError,
} from '../github/github-response.ts';
import { TreeReader } from '../github/tree-reader.ts';
import { mayHaveTakenEffect, UnconfirmedWriteError } from './unconfirmed-write-error.ts';
import { asWorkflowsRejection } from './workflows-rejection.ts';

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

/**
 * The fields of GitHub's git commit object that Apply reads, as GitHub returns it when it
 * creates or reads a commit (schema `git-commit` in @octokit/openapi-types 29, and the `commit`
 * that @octokit/fixtures 23 recorded in its create-file scenario). Each request checks only the
 * fields it reads, through `pick`.
 */
const gitCommitSchema = z.object({
  sha: gitObjectSha('commit'),
  tree: z.object({ sha: gitObjectSha('tree') }),
  parents: z.array(z.object({ sha: gitObjectSha('commit') })),
  message: z.string(),
  author: z.object({ email: z.string() }),
  committer: z.object({ email: z.string() }),
  verification: z.object({ verified: z.boolean() }),
});

/**
 * The field of GitHub's git reference that Apply reads, in the responses to reading and to
 * updating a ref (recorded in the git-refs scenario of @octokit/fixtures 23).
 */
const gitRefSchema = z.object({ object: z.object({ sha: gitObjectSha('commit') }) });

/**
 * The field of GitHub's comparison of two commits that Apply reads (schema `commit-comparison`
 * in @octokit/openapi-types 29): how the head relates to the base.
 */
const comparisonSchema = z.object({ status: z.enum(['diverged', 'ahead', 'behind', 'identical']) });

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
 * read first, and BranchMovedError is raised unless it still points to the parent. The ref is
 * read again when GitHub rejects the update with 409, 422 or a server error, or returns an
 * update response that does not name the new commit. BranchMovedError is then raised when the
 * ref points elsewhere, and the update's error is raised again when it has not moved. When
 * that read fails after a server error, no response or an invalid response, the update may have
 * taken effect, and UnconfirmedWriteError is raised with the new commit's sha, also when GitHub
 * rate-limited the read or reported the installation unavailable.
 *
 * Every response is checked with parseGitHubResponse, which raises UnexpectedGitHubAnswerError.
 * A blob, tree or commit that GitHub created before such an error is referenced by no branch,
 * so the branch is unchanged. So is the branch when GitHub rejects a commit of workflow files
 * for lack of the Workflows permission, which raises WorkflowsRejectedError.
 */
export async function commitFiles(
  octokit: Octokit,
  target: CommitTarget,
  files: readonly CommitFile[],
): Promise<{ commitSha: string; recovered: boolean }> {
  try {
    return await writeCommit(octokit, target, files);
  } catch (error) {
    throw asWorkflowsRejection(error, files.map((file) => file.path)) ?? error;
  }
}

async function writeCommit(
  octokit: Octokit,
  target: CommitTarget,
  files: readonly CommitFile[],
): Promise<{ commitSha: string; recovered: boolean }> {
  const repository = { owner: target.owner, repo: target.repo };
  const parent = parseGitHubResponse(
    gitCommitSchema.pick({ tree: true }),
    'GET',
    await octokit.rest.git.getCommit({ ...repository, commit_sha: target.parentSha }),
  );
  const reader = new TreeReader(octokit, repository, parent.tree.sha);
  const entries = [];
  for (const file of files) {
    const mode = await readFileMode(reader, file.path);
    // Base64 keeps the bytes exact: CRLF line endings and a missing final newline survive.
    const blob = parseGitHubResponse(
      z.object({ sha: gitObjectSha('blob') }),
      'POST',
      await octokit.rest.git.createBlob({
        ...repository,
        content: Buffer.from(file.content, 'utf8').toString('base64'),
        encoding: 'base64',
      }),
    );
    entries.push({
      path: file.path,
      mode: mode as '100644' | '100755',
      type: 'blob' as const,
      sha: blob.sha,
    });
  }
  const tree = parseGitHubResponse(
    z.object({ sha: gitObjectSha('tree') }),
    'POST',
    await octokit.rest.git.createTree({ ...repository, base_tree: parent.tree.sha, tree: entries }),
  );
  const commit = parseGitHubResponse(
    gitCommitSchema.pick({ sha: true }),
    'POST',
    await octokit.rest.git.createCommit({
      ...repository,
      message: target.message,
      tree: tree.sha,
      parents: [target.parentSha],
    }),
  );

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
    const response = await octokit.rest.git.updateRef({
      ...repository,
      ref,
      sha: commit.sha,
      force: false,
      request: { retries: 0 },
    });
    const updated = parseGitHubResponse(gitRefSchema, 'PATCH', response);
    if (updated.object.sha !== commit.sha) {
      throw new UnexpectedGitHubAnswerError(
        'PATCH',
        requestPath(response.url),
        `object.sha: expected the new commit ${commit.sha}, received ${updated.object.sha}`,
        response.status,
      );
    }
    return { commitSha: commit.sha, recovered: false };
  } catch (error) {
    if (isUnprocessable(error, 'Reference does not exist')) throw deletedError(target);
    // An invalid response to the update may follow an update that took effect, so the ref
    // decides, as after a server error. Raising the error at once would release the claim
    // without recording a commit that moved the branch and superseded the run.
    if (!(error instanceof UnexpectedGitHubAnswerError) && !mayHaveMoved(error)) throw error;
    updateError = error;
  }

  // An earlier attempt may have moved the branch to the same change before it was recorded.
  let after;
  try {
    after = await readBranchTip(octokit, repository, ref, change);
  } catch (readError) {
    // GitHub rejected a 409 or 422 update, so only the other failures leave the outcome unknown.
    if (!mayHaveTakenEffect(updateError)) throw readError;
    throw new UnconfirmedWriteError('commit', commit.sha, updateError, readError);
  }
  if (after.sameChange) return { commitSha: after.sha, recovered: true };
  if (after.sha === target.parentSha) throw updateError;
  throw movedError(target, after.sha);
}

/**
 * Returns `commitSha` when branch `branch` contains it: the branch points to it, or GitHub's
 * compare API reports the branch ahead of it or identical. Returns null when the branch does
 * not contain it or no longer exists.
 */
export async function findCommitOnBranch(
  octokit: Octokit,
  target: { owner: string; repo: string; branch: string; commitSha: string },
): Promise<string | null> {
  const repository = { owner: target.owner, repo: target.repo };
  let tip;
  try {
    const response = await octokit.rest.git.getRef({ ...repository, ref: `heads/${target.branch}` });
    tip = parseGitHubResponse(gitRefSchema, 'GET', response).object.sha;
  } catch (error) {
    if (statusOf(error) === 404) return null;
    throw error;
  }
  return (await containsCommit(octokit, { ...repository, tipSha: tip, commitSha: target.commitSha }))
    ? target.commitSha
    : null;
}

/**
 * Returns whether the history of commit `tipSha` contains commit `commitSha`: the two are the
 * same, or GitHub's compare API reports `tipSha` ahead of it or identical.
 */
export async function containsCommit(
  octokit: Octokit,
  target: { owner: string; repo: string; tipSha: string; commitSha: string },
): Promise<boolean> {
  if (target.tipSha === target.commitSha) return true;
  const comparison = parseGitHubResponse(
    comparisonSchema,
    'GET',
    await octokit.rest.repos.compareCommitsWithBasehead({
      owner: target.owner,
      repo: target.repo,
      basehead: `${target.commitSha}...${target.tipSha}`,
      per_page: 1,
    }),
  );
  return comparison.status === 'ahead' || comparison.status === 'identical';
}

/**
 * Returns `commitSha` when it is a commit that an earlier apply made: its only parent is
 * `parentSha`, its message contains `marker`, and this app created it (see `isAppCommit`).
 * Returns null for any other commit.
 */
export async function findPushedCommit(
  octokit: Octokit,
  target: {
    owner: string;
    repo: string;
    commitSha: string;
    parentSha: string;
    marker: string;
    app: AppIdentity;
  },
): Promise<string | null> {
  const commit = parseGitHubResponse(
    gitCommitSchema.pick({
      parents: true,
      message: true,
      author: true,
      committer: true,
      verification: true,
    }),
    'GET',
    await octokit.rest.git.getCommit({
      owner: target.owner,
      repo: target.repo,
      commit_sha: target.commitSha,
    }),
  );
  const { parents } = commit;
  if (parents.length !== 1 || parents[0]?.sha !== target.parentSha) return null;
  if (!commit.message.includes(target.marker)) return null;
  const bot = await target.app.botUser(octokit);
  return isAppCommit(commit, bot, target.app) ? target.commitSha : null;
}

/**
 * Returns whether GitHub created and signed `commit` for the app whose bot user is `bot`.
 *
 * Assumed from GitHub's documentation on signature verification for bots: a commit that an
 * installation token creates through the Git Data API without author or committer, as
 * commitFiles does, is authored by `SLUG[bot] <ID+SLUG[bot]@users.noreply.HOST>`, committed
 * by `GitHub <noreply@HOST>` and signed by GitHub. Anyone can write these addresses into a
 * commit, so the signature decides. GitHub verifies a signature only when the committer's
 * address belongs to the owner of the signing key, and only GitHub signs as noreply@HOST or
 * as the bot. A user who signs with their own key must name themselves as the committer.
 * NOTE: GitHub Enterprise Server signs such commits only with web commit signing enabled, and
 * its no-reply address is a setting, assumed here to be noreply@HOST. Otherwise the app's own
 * commit is not recognised, and an apply that finds it is rejected as for a moved branch.
 */
function isAppCommit(
  commit: { author: { email: string }; committer: { email: string }; verification: { verified: boolean } },
  bot: AppBotUser,
  app: Pick<AppIdentity, 'webHost' | 'webCommitterEmail'>,
): boolean {
  // The whole address is compared: a user can verify `ID+SLUG[bot]@users.noreply.` at a host
  // of their own and sign as it. Logins and hosts are case-insensitive on GitHub.
  const botAddress = `${bot.id}+${bot.login}@users.noreply.${app.webHost}`.toLowerCase();
  const author = commit.author.email.toLowerCase();
  const committer = commit.committer.email.toLowerCase();
  const committedByGitHub = committer === app.webCommitterEmail.toLowerCase() || committer === author;
  return author === botAddress && committedByGitHub && commit.verification.verified;
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
  const current = parseGitHubResponse(
    gitRefSchema,
    'GET',
    await octokit.rest.git.getRef({ ...repository, ref }),
  );
  const sha = current.object.sha;
  if (sha === change.parentSha) return { sha, sameChange: false };
  const tip = parseGitHubResponse(
    gitCommitSchema.pick({ tree: true, parents: true }),
    'GET',
    await octokit.rest.git.getCommit({ ...repository, commit_sha: sha }),
  );
  const sameChange =
    tip.tree.sha === change.treeSha &&
    tip.parents.length === 1 &&
    tip.parents[0]?.sha === change.parentSha;
  return { sha, sameChange };
}
