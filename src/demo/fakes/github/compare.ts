import {
  listCommitsBetween,
  readCommit,
  readMergeBase,
  resolveCommit,
  type CommitObject,
} from './git.ts';
import { commitVerification } from './git-data.ts';
import { diffEntryPayload, nodeId, type RepositoryRecord } from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type Route } from './router.ts';
import {
  cachedDiff,
  json,
  paginate,
  param,
  requireRepository,
  type Context,
} from './route-helpers.ts';
import type { FakeState } from './state.ts';

/**
 * Compare API of the fake: `GET /repos/:owner/:repo/compare/BASE...HEAD`, where BASE and HEAD are
 * commits, branches or tags of the repository. The files are those of the three-dot diff, as for
 * a pull request, with `patch` left out above GitHub's limits for one file.
 * NOTE: the two-dot form and `owner:ref` names of fork branches are not served; they get 404.
 */

const compareDocs = 'https://docs.github.com/rest/commits/commits#compare-two-commits';

/** Without `per_page` or `page`, GitHub lists at most this many commits: the most recent ones. */
const maxUnpaginatedCommits = 250;
/** GitHub lists at most this many changed files of a comparison, on the first page only. */
const maxComparedFiles = 300;

/** A commit as the commits and compare APIs return it, without stats and files. */
async function commitPayload(state: FakeState, repository: RepositoryRecord, commit: CommitObject) {
  const verification = await commitVerification(state, repository, commit.sha);
  const base = `${state.baseUrl}/repos/${repository.owner}/${repository.repo}`;
  const web = `${state.baseUrl}/${repository.owner}/${repository.repo}`;
  return {
    sha: commit.sha,
    node_id: nodeId('Commit', `${repository.id}:${commit.sha}`),
    url: `${base}/commits/${commit.sha}`,
    html_url: `${web}/commit/${commit.sha}`,
    comments_url: `${base}/commits/${commit.sha}/comments`,
    commit: {
      url: `${base}/git/commits/${commit.sha}`,
      author: commit.author,
      committer: commit.committer,
      message: commit.message,
      tree: { sha: commit.tree, url: `${base}/git/trees/${commit.tree}` },
      comment_count: 0,
      verification,
    },
    // GitHub sends null when no account has the commit's email, and the fake has no accounts.
    author: null,
    committer: null,
    parents: commit.parents.map((parent) => ({
      sha: parent,
      url: `${base}/commits/${parent}`,
      html_url: `${web}/commit/${parent}`,
    })),
  };
}

async function requireCommit(repository: RepositoryRecord, sha: string): Promise<CommitObject> {
  const commit = await readCommit(repository.gitDir, sha);
  if (!commit) {
    throw new Error(`Commit ${sha} is missing from ${repository.gitDir}`);
  }
  return commit;
}

function comparisonStatus(aheadBy: number, behindBy: number): string {
  if (aheadBy === 0 && behindBy === 0) return 'identical';
  if (behindBy === 0) return 'ahead';
  if (aheadBy === 0) return 'behind';
  return 'diverged';
}

async function compareCommits(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const { gitDir, owner, repo } = repository;
  const { baseUrl } = context.state;
  const basehead = param(context, 'basehead');
  const separator = basehead.indexOf('...');
  if (separator === -1) {
    throw new FakeGitHubError(404, 'Not Found', compareDocs);
  }
  const baseName = basehead.slice(0, separator);
  const headName = basehead.slice(separator + 3);
  const baseSha = await resolveCommit(gitDir, baseName);
  const headSha = await resolveCommit(gitDir, headName);
  if (!baseSha || !headSha) {
    throw new FakeGitHubError(404, 'Not Found', compareDocs);
  }
  const mergeBase = await readMergeBase(gitDir, baseSha, headSha);
  if (!mergeBase) {
    const message = `No common ancestor between ${baseName} and ${headName}.`;
    throw new FakeGitHubError(404, message, compareDocs);
  }

  const ahead = await listCommitsBetween(gitDir, baseSha, headSha);
  const behind = await listCommitsBetween(gitDir, headSha, baseSha);
  const { searchParams } = context.url;
  const paginated = searchParams.has('per_page') || searchParams.has('page');
  const apiPath = `/repos/${owner}/${repo}/compare/${basehead}`;
  const { page: listedShas, link } = paginated
    ? paginate(ahead, context.url, baseUrl, apiPath)
    : { page: ahead.slice(-maxUnpaginatedCommits), link: undefined };
  const commits = [];
  for (const sha of listedShas) {
    const commit = await requireCommit(repository, sha);
    commits.push(await commitPayload(context.state, repository, commit));
  }
  const firstPage = !paginated || (Number(searchParams.get('page')) || 1) === 1;
  const entries = firstPage ? await cachedDiff(gitDir, baseSha, headSha) : [];

  const webPath = `${baseUrl}/${owner}/${repo}/compare/${basehead}`;
  const body = {
    url: `${baseUrl}${apiPath}`,
    html_url: webPath,
    permalink_url: `${baseUrl}/${owner}/${repo}/compare/${owner}:${baseSha}...${owner}:${headSha}`,
    diff_url: `${webPath}.diff`,
    patch_url: `${webPath}.patch`,
    base_commit: await commitPayload(
      context.state,
      repository,
      await requireCommit(repository, baseSha),
    ),
    merge_base_commit: await commitPayload(
      context.state,
      repository,
      await requireCommit(repository, mergeBase),
    ),
    status: comparisonStatus(ahead.length, behind.length),
    ahead_by: ahead.length,
    behind_by: behind.length,
    total_commits: ahead.length,
    commits,
    files: entries
      .slice(0, maxComparedFiles)
      .map((entry) => diffEntryPayload(baseUrl, repository, headSha, entry)),
  };
  return json(200, body, link ? { link } : undefined);
}

export const compareRoutes: Route<FakeState>[] = [
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/compare/*basehead',
    auth: 'installation',
    handle: compareCommits,
  },
];
