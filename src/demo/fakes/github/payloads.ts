import type { DiffEntry, TreeEntry } from './git.ts';

/**
 * JSON bodies of the fake GitHub API. Field names and order follow the recorded responses in
 * @octokit/fixtures 23 (contents, issues) and the schemas in @octokit/openapi-types (diff-entry,
 * blob, installation, installation-token, pull-request). Every URL points at the fake's own
 * base URL: API paths as on api.github.com, web pages as `/{owner}/{repo}/blob/...` below the
 * same base.
 */

export interface RepositoryRecord {
  owner: string;
  repo: string;
  id: number;
  gitDir: string;
  /** An archived repository is read-only on GitHub. Unset means not archived. */
  archived?: boolean;
}

export interface PullRequestRecord {
  owner: string;
  repo: string;
  number: number;
  baseSha: string;
  headSha: string;
  headRef: string;
  /** Owner of the repository that contains the head branch. */
  headOwner: string;
  /** Name of the repository that contains the head branch, or null after it was deleted. */
  headRepo: string | null;
  baseRef: string;
  title: string;
  body: string | null;
  state: 'open' | 'closed';
  /** When the pull request was closed, as a GitHub timestamp, or null while it is open. */
  closedAt: string | null;
  /** When the pull request was merged, as a GitHub timestamp, or null unless it was merged. */
  mergedAt: string | null;
  /**
   * Last change of the pull request, as a GitHub timestamp. When unset, `updated_at` is the
   * close time of a closed pull request and the creation time of an open one.
   */
  updatedAt?: string;
  /** When the pull request was opened, as a GitHub timestamp. Unset means 2024-01-01T00:00:00Z. */
  createdAt?: string;
  draft: boolean;
  user: string;
}

export interface InstallationAccount {
  login: string;
  id?: number;
  type?: 'User' | 'Organization';
}

export interface InstallationRecord {
  id: number;
  account: InstallationAccount;
  permissions: Record<string, 'read' | 'write'>;
  /** A suspended installation gets 403 from the access token endpoint, as on GitHub. */
  suspended: boolean;
  /** Login of the user who suspended the installation, or null while it is not suspended. */
  suspendedBy: string | null;
  /** GitHub timestamp of the suspension, or null while the installation is not suspended. */
  suspendedAt: string | null;
}

/** Fixed timestamp for created_at and similar fields, so responses are reproducible. */
const createdAt = '2024-01-01T00:00:00Z';

/** Encodes each segment of a repository path for use in a URL. */
export function encodePath(filePath: string): string {
  return filePath.split('/').map(encodeURIComponent).join('/');
}

/** Base64 with a newline after every 60 characters and at the end, as GitHub returns it. */
export function githubBase64(bytes: Buffer): string {
  const encoded = bytes.toString('base64');
  let wrapped = '';
  for (let index = 0; index < encoded.length; index += 60) {
    wrapped += encoded.slice(index, index + 60) + '\n';
  }
  return wrapped;
}

export function nodeId(kind: string, key: string): string {
  return Buffer.from(`${kind}:${key}`).toString('base64');
}

/** Stable numeric id for a login, so users and owners have ids without registration. */
export function accountId(login: string): number {
  let hash = 7;
  for (const character of login.toLowerCase()) {
    hash = (hash * 31 + character.charCodeAt(0)) % 90_000_000;
  }
  return 1000 + hash;
}

export function userPayload(
  baseUrl: string,
  login: string,
  type: 'User' | 'Organization' = 'User',
) {
  const id = accountId(login);
  const url = `${baseUrl}/users/${login}`;
  return {
    login,
    id,
    node_id: nodeId('User', String(id)),
    avatar_url: `${baseUrl}/avatars/u/${id}?v=4`,
    gravatar_id: '',
    url,
    html_url: `${baseUrl}/${login}`,
    followers_url: `${url}/followers`,
    following_url: `${url}/following{/other_user}`,
    gists_url: `${url}/gists{/gist_id}`,
    starred_url: `${url}/starred{/owner}{/repo}`,
    subscriptions_url: `${url}/subscriptions`,
    organizations_url: `${url}/orgs`,
    repos_url: `${url}/repos`,
    events_url: `${url}/events{/privacy}`,
    received_events_url: `${url}/received_events`,
    type,
    site_admin: false,
  };
}

export function repositoryPayload(
  baseUrl: string,
  repository: RepositoryRecord,
  defaultBranch: string,
) {
  const url = `${baseUrl}/repos/${repository.owner}/${repository.repo}`;
  return {
    id: repository.id,
    node_id: nodeId('Repository', String(repository.id)),
    name: repository.repo,
    full_name: `${repository.owner}/${repository.repo}`,
    private: true,
    owner: userPayload(baseUrl, repository.owner),
    html_url: `${baseUrl}/${repository.owner}/${repository.repo}`,
    description: null,
    fork: false,
    url,
    blobs_url: `${url}/git/blobs{/sha}`,
    trees_url: `${url}/git/trees{/sha}`,
    commits_url: `${url}/commits{/sha}`,
    contents_url: `${url}/contents/{+path}`,
    compare_url: `${url}/compare/{base}...{head}`,
    issues_url: `${url}/issues{/number}`,
    pulls_url: `${url}/pulls{/number}`,
    created_at: createdAt,
    updated_at: createdAt,
    pushed_at: createdAt,
    clone_url: `${baseUrl}/${repository.owner}/${repository.repo}.git`,
    size: 0,
    language: null,
    archived: repository.archived ?? false,
    disabled: false,
    visibility: 'private',
    default_branch: defaultBranch,
  };
}

/**
 * Builds a pull request as `GET /repos/{owner}/{repo}/pulls` lists it (schema
 * `pull-request-simple` in @octokit/openapi-types 29). `headRepository` is null after the head
 * repository was deleted. GitHub then keeps the head's label, ref, sha and user, and sends
 * `repo: null` although @octokit/openapi-types 29 types `head.repo` as never null.
 */
export function pullRequestSimplePayload(
  baseUrl: string,
  pullRequest: PullRequestRecord,
  repository: ReturnType<typeof repositoryPayload>,
  headRepository: ReturnType<typeof repositoryPayload> | null,
) {
  const { owner, repo, number } = pullRequest;
  const url = `${baseUrl}/repos/${owner}/${repo}/pulls/${number}`;
  const htmlUrl = `${baseUrl}/${owner}/${repo}/pull/${number}`;
  const issueUrl = `${baseUrl}/repos/${owner}/${repo}/issues/${number}`;
  const user = userPayload(baseUrl, pullRequest.user);
  const ownerUser = userPayload(baseUrl, owner);
  const openedAt = pullRequest.createdAt ?? createdAt;
  const closedAt = pullRequest.state === 'closed' ? (pullRequest.closedAt ?? openedAt) : null;
  return {
    url,
    id: repository.id * 1000 + number,
    node_id: nodeId('PullRequest', `${repository.id}:${number}`),
    html_url: htmlUrl,
    diff_url: `${htmlUrl}.diff`,
    patch_url: `${htmlUrl}.patch`,
    issue_url: issueUrl,
    number,
    state: pullRequest.state,
    locked: false,
    title: pullRequest.title,
    user,
    body: pullRequest.body,
    created_at: openedAt,
    updated_at: pullRequest.updatedAt ?? closedAt ?? openedAt,
    closed_at: closedAt,
    merged_at: pullRequest.mergedAt,
    merge_commit_sha: null,
    assignee: null,
    assignees: [],
    requested_reviewers: [],
    requested_teams: [],
    labels: [],
    milestone: null,
    draft: pullRequest.draft,
    commits_url: `${url}/commits`,
    review_comments_url: `${url}/comments`,
    review_comment_url: `${baseUrl}/repos/${owner}/${repo}/pulls/comments{/number}`,
    comments_url: `${issueUrl}/comments`,
    statuses_url: `${baseUrl}/repos/${owner}/${repo}/statuses/${pullRequest.headSha}`,
    head: {
      label: `${pullRequest.headOwner}:${pullRequest.headRef}`,
      ref: pullRequest.headRef,
      sha: pullRequest.headSha,
      user: userPayload(baseUrl, pullRequest.headOwner),
      repo: headRepository,
    },
    base: {
      label: `${owner}:${pullRequest.baseRef}`,
      ref: pullRequest.baseRef,
      sha: pullRequest.baseSha,
      user: ownerUser,
      repo: repository,
    },
    _links: {
      self: { href: url },
      html: { href: htmlUrl },
      issue: { href: issueUrl },
      comments: { href: `${issueUrl}/comments` },
      review_comments: { href: `${url}/comments` },
      review_comment: { href: `${baseUrl}/repos/${owner}/${repo}/pulls/comments{/number}` },
      commits: { href: `${url}/commits` },
      statuses: { href: `${baseUrl}/repos/${owner}/${repo}/statuses/${pullRequest.headSha}` },
    },
    author_association: 'CONTRIBUTOR',
    auto_merge: null,
    active_lock_reason: null,
  };
}

/**
 * Builds the body of `GET /repos/{owner}/{repo}/pulls/{pull_number}` (schema `pull-request`):
 * the listed form plus the merge state and the counts.
 */
export function pullRequestPayload(
  baseUrl: string,
  pullRequest: PullRequestRecord,
  repository: ReturnType<typeof repositoryPayload>,
  headRepository: ReturnType<typeof repositoryPayload> | null,
  counts: { commits: number; additions: number; deletions: number; changedFiles: number },
) {
  return {
    ...pullRequestSimplePayload(baseUrl, pullRequest, repository, headRepository),
    merged: pullRequest.mergedAt !== null,
    mergeable: true,
    rebaseable: true,
    mergeable_state: 'clean',
    merged_by: pullRequest.mergedAt === null ? null : userPayload(baseUrl, pullRequest.owner),
    comments: 0,
    review_comments: 0,
    maintainer_can_modify: false,
    commits: counts.commits,
    additions: counts.additions,
    deletions: counts.deletions,
    changed_files: counts.changedFiles,
  };
}

export function diffEntryPayload(
  baseUrl: string,
  repository: RepositoryRecord,
  headSha: string,
  entry: DiffEntry,
) {
  const { owner, repo } = repository;
  const encoded = encodePath(entry.filename);
  const payload: Record<string, unknown> = {
    // NOTE: for removed files this is the deleted blob's sha; GitHub's value there is unverified.
    sha: entry.status === 'removed' ? entry.oldSha : entry.newSha,
    filename: entry.filename,
    status: entry.status,
    additions: entry.additions,
    deletions: entry.deletions,
    changes: entry.additions + entry.deletions,
    blob_url: `${baseUrl}/${owner}/${repo}/blob/${headSha}/${encoded}`,
    raw_url: `${baseUrl}/${owner}/${repo}/raw/${headSha}/${encoded}`,
    contents_url: `${baseUrl}/repos/${owner}/${repo}/contents/${encoded}?ref=${headSha}`,
  };
  if (entry.patch !== null) {
    payload.patch = entry.patch;
  }
  if (entry.previousFilename !== undefined) {
    payload.previous_filename = entry.previousFilename;
  }
  return payload;
}

/** Type that the contents API reports for a tree entry. */
export type ContentType = 'file' | 'dir' | 'symlink' | 'submodule';

export function contentType(entry: TreeEntry): ContentType {
  if (entry.type === 'tree') {
    return 'dir';
  }
  if (entry.type === 'commit') {
    return 'submodule';
  }
  return entry.mode === '120000' ? 'symlink' : 'file';
}

/** Fields shared by every contents API object: name, path, sha, size, url and links. */
export function contentSummary(
  baseUrl: string,
  repository: RepositoryRecord,
  entry: TreeEntry,
  ref: string,
  type: ContentType,
) {
  const { owner, repo } = repository;
  const encoded = encodePath(entry.path);
  const apiBase = `${baseUrl}/repos/${owner}/${repo}`;
  const url = `${apiBase}/contents/${encoded}?ref=${encodeURIComponent(ref)}`;
  const gitUrl =
    type === 'dir' ? `${apiBase}/git/trees/${entry.sha}` : `${apiBase}/git/blobs/${entry.sha}`;
  const webBase = `${baseUrl}/${owner}/${repo}`;
  const htmlUrl = `${webBase}/${type === 'dir' ? 'tree' : 'blob'}/${ref}/${encoded}`;
  const downloadable = type === 'file' || type === 'symlink';
  const downloadUrl = downloadable ? `${webBase}/raw/${ref}/${encoded}` : null;
  return {
    name: entry.path.split('/').pop() ?? entry.path,
    path: entry.path,
    sha: entry.sha,
    size: entry.size ?? 0,
    url,
    html_url: type === 'submodule' ? null : htmlUrl,
    git_url: type === 'submodule' ? null : gitUrl,
    download_url: downloadUrl,
    type,
    _links: {
      self: url,
      git: type === 'submodule' ? null : gitUrl,
      html: type === 'submodule' ? null : htmlUrl,
    },
  };
}

export function blobPayload(
  baseUrl: string,
  repository: RepositoryRecord,
  sha: string,
  bytes: Buffer,
) {
  return {
    sha,
    node_id: nodeId('Blob', `${repository.id}:${sha}`),
    size: bytes.length,
    url: `${baseUrl}/repos/${repository.owner}/${repository.repo}/git/blobs/${sha}`,
    content: githubBase64(bytes),
    encoding: 'base64',
  };
}

export function installationPayload(
  baseUrl: string,
  appId: string,
  installation: InstallationRecord,
) {
  const type = installation.account.type ?? 'Organization';
  const account = userPayload(baseUrl, installation.account.login, type);
  const { suspendedBy } = installation;
  if (installation.account.id !== undefined) {
    account.id = installation.account.id;
  }
  return {
    id: installation.id,
    account,
    repository_selection: 'all',
    access_tokens_url: `${baseUrl}/app/installations/${installation.id}/access_tokens`,
    repositories_url: `${baseUrl}/installation/repositories`,
    html_url: `${baseUrl}/settings/installations/${installation.id}`,
    app_id: Number(appId),
    app_slug: 'fixwright',
    target_id: account.id,
    target_type: type,
    permissions: installation.permissions,
    events: ['pull_request', 'check_run'],
    created_at: createdAt,
    updated_at: installation.suspendedAt ?? createdAt,
    single_file_name: null,
    has_multiple_single_files: false,
    single_file_paths: [],
    suspended_by: suspendedBy === null ? null : userPayload(baseUrl, suspendedBy),
    suspended_at: installation.suspendedAt,
  };
}
