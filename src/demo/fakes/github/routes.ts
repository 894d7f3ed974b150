import { randomBytes } from 'node:crypto';
import {
  listDirectory,
  readBlob,
  readDefaultBranch,
  readTreeEntry,
  resolveCommit,
  resolveSymlinkTarget,
  runGit,
  type TreeEntry,
} from './git.ts';
import {
  accountId,
  blobPayload,
  contentSummary,
  contentType,
  diffEntryPayload,
  githubBase64,
  installationPayload,
  pullRequestPayload,
  pullRequestSimplePayload,
  repositoryPayload,
  type PullRequestRecord,
  type RepositoryRecord,
} from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type Route } from './router.ts';
import {
  cachedDiff,
  githubTimestamp,
  json,
  paginate,
  param,
  requireRepository,
  type Context,
} from './route-helpers.ts';
import type { FakeState } from './state.ts';
import { appRoutes } from './app.ts';
import { checkRoutes } from './checks.ts';
import { compareRoutes } from './compare.ts';
import { gitDataRoutes } from './git-data.ts';
import { issueCommentRoutes } from './issue-comments.ts';
import { reviewRoutes } from './reviews.ts';

/** Route table of the fake. Add an endpoint by appending a route here. */

/** GitHub lists at most this many files of a pull request. */
export const maxPullRequestFiles = 3000;
/** Above this size the contents API returns no content (`encoding: 'none'`). */
export const maxInlineContentBytes = 1024 * 1024;
const tokenLifetimeMs = 60 * 60 * 1000;

const contentsDocs = 'https://docs.github.com/rest/repos/contents#get-repository-content';
const blobsDocs = 'https://docs.github.com/rest/git/blobs#get-a-blob';
const accessTokenDocs =
  'https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app';

async function createAccessToken(context: Context): Promise<FakeResponse> {
  const installation = context.state.requireInstallation(Number(param(context, 'installation_id')));
  if (installation.suspended) {
    throw new FakeGitHubError(403, 'This installation has been suspended', accessTokenDocs);
  }
  const token = `ghs_${randomBytes(18).toString('base64url').replace(/[-_]/g, 'x')}`;
  const expiresAt = new Date(Date.now() + tokenLifetimeMs);
  context.state.tokens.set(token, { token, installationId: installation.id, expiresAt });
  return json(201, {
    token,
    expires_at: githubTimestamp(expiresAt),
    permissions: installation.permissions,
    repository_selection: 'all',
  });
}

function getInstallation(context: Context): FakeResponse {
  const installation = context.state.requireInstallation(Number(param(context, 'installation_id')));
  return json(200, installationPayload(context.state.baseUrl, context.state.appId, installation));
}

function getRepositoryInstallation(context: Context): FakeResponse {
  const { state } = context;
  const repository = state.requireRepository(
    context.credential,
    param(context, 'owner'),
    param(context, 'repo'),
  );
  const owner = repository.owner.toLowerCase();
  const installation = [...state.installations.values()].find(
    (candidate) => candidate.account.login.toLowerCase() === owner,
  );
  if (!installation) {
    throw new FakeGitHubError(404, 'Not Found');
  }
  return json(200, installationPayload(state.baseUrl, state.appId, installation));
}

/**
 * Returns the repository of a pull request's head branch: the base repository's own payload,
 * a fork's, or null after the head repository was deleted. A fork that the fake does not serve
 * gets an id derived from its name.
 */
function headRepositoryPayload(
  state: FakeState,
  pullRequest: PullRequestRecord,
  base: ReturnType<typeof repositoryPayload>,
): ReturnType<typeof repositoryPayload> | null {
  const { headOwner, headRepo } = pullRequest;
  if (headRepo === null) return null;
  if (`${headOwner}/${headRepo}`.toLowerCase() === base.full_name.toLowerCase()) return base;
  const fork = state.findRepository(headOwner, headRepo) ?? {
    owner: headOwner,
    repo: headRepo,
    id: accountId(`${headOwner}/${headRepo}`),
    gitDir: '',
  };
  return { ...repositoryPayload(state.baseUrl, fork, base.default_branch), fork: true };
}

async function getPullRequest(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const pullRequest = context.state.requirePullRequest(
    repository,
    Number(param(context, 'pull_number')),
  );
  const { gitDir } = repository;
  const entries = await cachedDiff(gitDir, pullRequest.baseSha, pullRequest.headSha);
  const commits = await runGit(gitDir, [
    'rev-list',
    '--count',
    pullRequest.headSha,
    `^${pullRequest.baseSha}`,
  ]);
  const repositoryJson = repositoryPayload(
    context.state.baseUrl,
    repository,
    await readDefaultBranch(gitDir),
  );
  const headJson = headRepositoryPayload(context.state, pullRequest, repositoryJson);
  return json(
    200,
    pullRequestPayload(context.state.baseUrl, pullRequest, repositoryJson, headJson, {
      commits: Number(commits.toString('utf8').trim()),
      additions: entries.reduce((sum, entry) => sum + entry.additions, 0),
      deletions: entries.reduce((sum, entry) => sum + entry.deletions, 0),
      changedFiles: entries.length,
    }),
  );
}

/**
 * Lists the repositories that an installation token can read: those of the installation's
 * account, as for an installation with `repository_selection: 'all'`, in the order of their ids.
 */
async function listInstallationRepositories(context: Context): Promise<FakeResponse> {
  const { credential, state } = context;
  if (credential.kind !== 'installation') {
    throw new FakeGitHubError(403, 'This endpoint requires an installation access token');
  }
  const installation = state.requireInstallation(credential.installationId);
  const repositories = state.repositoriesOf(installation.account.login);
  const { page, link } = paginate(repositories, context.url, state.baseUrl, '/installation/repositories');
  const payloads = await Promise.all(
    page.map(async (repository) =>
      repositoryPayload(state.baseUrl, repository, await readDefaultBranch(repository.gitDir)),
    ),
  );
  const body = {
    total_count: repositories.length,
    repository_selection: 'all',
    repositories: payloads,
  };
  return json(200, body, link ? { link } : undefined);
}

const listPullsDocs = 'https://docs.github.com/rest/pulls/pulls#list-pull-requests';

/**
 * Lists the pull requests of a repository with the `state` filter (`open` by default, `closed`
 * or `all`), sorted as GitHub documents: by `created` (the default) or `updated`, with
 * `direction` `desc` by default for `created` and `asc` for other sorts. Pull requests of the
 * same time are ordered by number, because GitHub documents no order for them.
 * NOTE: the sorts `popularity` and `long-running` are valid on GitHub but not implemented here,
 * so they fail the request with 500 and a handler error.
 */
async function listPullRequests(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const { searchParams } = context.url;
  const stateFilter = searchParams.get('state') ?? 'open';
  const sort = searchParams.get('sort') ?? 'created';
  const direction = searchParams.get('direction') ?? (sort === 'created' ? 'desc' : 'asc');
  if (
    !['open', 'closed', 'all'].includes(stateFilter) ||
    !['created', 'updated', 'popularity', 'long-running'].includes(sort) ||
    !['asc', 'desc'].includes(direction)
  ) {
    throw new FakeGitHubError(422, 'Validation Failed', listPullsDocs);
  }
  if (sort !== 'created' && sort !== 'updated') {
    throw new Error(`The fake GitHub does not implement sort=${sort} for the pull request list.`);
  }
  const { baseUrl } = context.state;
  const repositoryJson = repositoryPayload(baseUrl, repository, await readDefaultBranch(repository.gitDir));
  const listed = context.state
    .pullRequestsOf(repository)
    .filter((pullRequest) => stateFilter === 'all' || pullRequest.state === stateFilter)
    .map((pullRequest) =>
      pullRequestSimplePayload(
        baseUrl,
        pullRequest,
        repositoryJson,
        headRepositoryPayload(context.state, pullRequest, repositoryJson),
      ),
    );
  const field = sort === 'created' ? 'created_at' : 'updated_at';
  const sign = direction === 'asc' ? 1 : -1;
  listed.sort(
    (left, right) =>
      sign * (Date.parse(left[field]) - Date.parse(right[field]) || left.number - right.number),
  );
  // GitHub's pagination links name the repository by id, not by owner and name.
  const linkPath = `/repositories/${repository.id}/pulls`;
  const { page, link } = paginate(listed, context.url, baseUrl, linkPath);
  return json(200, page, link ? { link } : undefined);
}

async function listPullRequestFiles(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const number = Number(param(context, 'pull_number'));
  const pullRequest = context.state.requirePullRequest(repository, number);
  const entries = await cachedDiff(repository.gitDir, pullRequest.baseSha, pullRequest.headSha);
  const { baseUrl } = context.state;
  const files = entries
    .slice(0, maxPullRequestFiles)
    .map((entry) => diffEntryPayload(baseUrl, repository, pullRequest.headSha, entry));
  // GitHub's pagination links name the repository by id, not by owner and name.
  const linkPath = `/repositories/${repository.id}/pulls/${number}/files`;
  const { page, link } = paginate(files, context.url, baseUrl, linkPath);
  return json(200, page, link ? { link } : undefined);
}

async function readSubmoduleUrl(gitDir: string, commit: string, submodulePath: string) {
  try {
    const blob = `${commit}:.gitmodules`;
    const paths = await runGit(gitDir, ['config', '--blob', blob, '--get-regexp', 'path$']);
    for (const line of paths.toString('utf8').split('\n')) {
      const [key = '', value = ''] = line.split(' ');
      if (value === submodulePath) {
        const urlKey = key.replace(/\.path$/, '.url');
        const url = await runGit(gitDir, ['config', '--blob', blob, '--get', urlKey]);
        return url.toString('utf8').trim();
      }
    }
  } catch {
    // No .gitmodules or no entry for this path.
  }
  return '';
}

async function fileContent(
  context: Context,
  repository: RepositoryRecord,
  entry: TreeEntry,
  ref: string,
) {
  const { _links, ...summary } = contentSummary(
    context.state.baseUrl,
    repository,
    entry,
    ref,
    'file',
  );
  const bytes = await readBlob(repository.gitDir, entry.sha);
  if (!bytes) {
    throw new Error(`Blob ${entry.sha} of ${entry.path} is missing from ${repository.gitDir}`);
  }
  // Files over 1 MB come without content, so clients read the blob or request the raw media type.
  const inline = bytes.length <= maxInlineContentBytes;
  return {
    ...summary,
    content: inline ? githubBase64(bytes) : '',
    encoding: inline ? 'base64' : 'none',
    _links,
  };
}

async function directoryListing(
  context: Context,
  repository: RepositoryRecord,
  commit: string,
  dirPath: string,
  ref: string,
) {
  const entries = await listDirectory(repository.gitDir, commit, dirPath);
  return entries.map((entry) => {
    const type = contentType(entry);
    // Directory listings report submodules as "file", as GitHub does for compatibility.
    const listedType = type === 'submodule' ? 'file' : type;
    return contentSummary(context.state.baseUrl, repository, entry, ref, listedType);
  });
}

async function getContent(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const { gitDir } = repository;
  const filePath = param(context, 'path').replace(/^\/+|\/+$/g, '');
  const ref = context.url.searchParams.get('ref') || (await readDefaultBranch(gitDir));
  const commit = await resolveCommit(gitDir, ref);
  if (!commit) {
    throw new FakeGitHubError(404, `No commit found for the ref ${ref}`, contentsDocs);
  }
  if (filePath === '') {
    return json(200, await directoryListing(context, repository, commit, '', ref));
  }

  const entry = await readTreeEntry(gitDir, commit, filePath);
  if (!entry) {
    throw new FakeGitHubError(404, 'Not Found', contentsDocs);
  }
  const type = contentType(entry);
  const baseUrl = context.state.baseUrl;
  if (type === 'dir') {
    return json(200, await directoryListing(context, repository, commit, filePath, ref));
  }
  if (type === 'submodule') {
    const submoduleGitUrl = await readSubmoduleUrl(gitDir, commit, filePath);
    const summary = contentSummary(baseUrl, repository, entry, ref, type);
    return json(200, { ...summary, submodule_git_url: submoduleGitUrl });
  }
  if (type === 'symlink') {
    const target = (await readBlob(gitDir, entry.sha))?.toString('utf8') ?? '';
    // A symlink to a regular file in the repository returns that file's content.
    const resolved = resolveSymlinkTarget(filePath, target);
    const targetEntry = resolved === null ? null : await readTreeEntry(gitDir, commit, resolved);
    if (targetEntry && contentType(targetEntry) === 'file') {
      return json(200, await fileContent(context, repository, targetEntry, ref));
    }
    const summary = contentSummary(baseUrl, repository, entry, ref, type);
    return json(200, { ...summary, target });
  }
  return json(200, await fileContent(context, repository, entry, ref));
}

async function getBlob(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const sha = param(context, 'file_sha');
  const bytes = await readBlob(repository.gitDir, sha);
  if (!bytes) {
    throw new FakeGitHubError(404, 'Not Found', blobsDocs);
  }
  return json(200, blobPayload(context.state.baseUrl, repository, sha, bytes));
}

export const defaultRoutes: Route<FakeState>[] = [
  {
    method: 'POST',
    pattern: '/app/installations/:installation_id/access_tokens',
    auth: 'app',
    handle: createAccessToken,
  },
  {
    method: 'GET',
    pattern: '/app/installations/:installation_id',
    auth: 'app',
    handle: getInstallation,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/installation',
    auth: 'app',
    handle: getRepositoryInstallation,
  },
  {
    method: 'GET',
    pattern: '/installation/repositories',
    auth: 'installation',
    handle: listInstallationRepositories,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/pulls',
    auth: 'installation',
    handle: listPullRequests,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/pulls/:pull_number',
    auth: 'installation',
    handle: getPullRequest,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/pulls/:pull_number/files',
    auth: 'installation',
    handle: listPullRequestFiles,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/contents/*path',
    auth: 'installation',
    handle: getContent,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/blobs/:file_sha',
    auth: 'installation',
    handle: getBlob,
  },
  ...appRoutes,
  ...checkRoutes,
  ...compareRoutes,
  ...issueCommentRoutes,
  ...gitDataRoutes,
  ...reviewRoutes,
];
