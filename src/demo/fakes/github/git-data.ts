import {
  commitText,
  compareAndSwapRef,
  isAncestor,
  listTree,
  objectType,
  readCommit,
  readRef,
  resolveTree,
  writeBlob,
  writeCommit,
  writeTree,
  type CommitObject,
  type TreeChange,
} from './git.ts';
import { nodeId, type RepositoryRecord } from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type Route } from './router.ts';
import {
  githubTimestamp,
  json,
  param,
  requireRepository,
  requireWritePermission,
  type Context,
} from './route-helpers.ts';
import { appBotCommitIdentity, webCommitterIdentity } from './app.ts';
import type { FakeState } from './state.ts';
import { sendSynchronize } from './webhooks.ts';

/**
 * Git Data API of the fake: blobs, trees, commits and refs written into the real repository
 * with `git hash-object -w`, a temporary index, `git commit-tree` and `git update-ref`. A ref
 * update without `force` succeeds only as a fast forward, and the ref moves only if it still
 * points where it pointed when the update was checked, as on GitHub. Moving the head branch of
 * an open pull request sends `pull_request.synchronize` to the webhook target, if one is set.
 *
 * A tree with an entry under `.github/workflows/` gets 403 "Resource not accessible by
 * integration" for an installation without Workflows: write, while the blobs of its files are
 * accepted. GitHub returned this status, message and documentation URL to POST /git/trees in
 * public reports by GitHub App users of anthropics/claude-code-action,
 * IAreKyleW00t/verified-bot-commit and suzuki-shunsuke/tfaction (2024 to 2026). The wording
 * "refusing to allow a GitHub App to create or update workflow … without `workflows`
 * permission" is git push's rejection, not the REST API's.
 * NOTE: whether GitHub also checks a deleted workflow file, an entry equal to the base tree's,
 * or the commit and ref requests of a tree created with another token is unverified. The fake
 * checks every entry under the folder, and only when it creates a tree.
 */

const gitDocs = 'https://docs.github.com/rest/git';
/** Folder of GitHub Actions workflow files, which only a token with Workflows: write may change. */
const workflowFolder = '.github/workflows';
const treeModes = ['100644', '100755', '040000', '160000', '120000'];
const objectTypeOfMode: Record<string, string> = { '040000': 'tree', '160000': 'commit' };

function invalid(message: string, docs = gitDocs): FakeGitHubError {
  return new FakeGitHubError(422, message, docs);
}

function body(context: Context): Record<string, unknown> {
  const value = context.request.body;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid('Invalid request.\n\nThe body must be a JSON object.');
  }
  return value as Record<string, unknown>;
}

function apiBase(state: FakeState, repository: RepositoryRecord): string {
  return `${state.baseUrl}/repos/${repository.owner}/${repository.repo}`;
}

async function createBlob(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const { content, encoding = 'utf-8' } = body(context);
  if (typeof content !== 'string') {
    throw invalid('Invalid request.\n\n"content" wasn\'t supplied.');
  }
  if (encoding !== 'utf-8' && encoding !== 'base64') {
    throw invalid(`Invalid request.\n\nencoding ${JSON.stringify(encoding)} is not supported.`);
  }
  const bytes = Buffer.from(content, encoding === 'base64' ? 'base64' : 'utf8');
  const sha = await writeBlob(repository.gitDir, bytes);
  const base = apiBase(context.state, repository);
  return json(201, { url: `${base}/git/blobs/${sha}`, sha }, {
    location: `${base}/git/blobs/${sha}`,
  });
}

async function treePayload(
  state: FakeState,
  repository: RepositoryRecord,
  treeSha: string,
  recursive: boolean,
) {
  const base = apiBase(state, repository);
  const entries = await listTree(repository.gitDir, treeSha, recursive);
  return {
    sha: treeSha,
    url: `${base}/git/trees/${treeSha}`,
    tree: entries.map((entry) => {
      const kind = entry.type === 'tree' ? 'trees' : 'blobs';
      const item: Record<string, unknown> = {
        path: entry.path,
        mode: entry.mode,
        type: entry.type,
        sha: entry.sha,
      };
      if (entry.type === 'blob') item.size = entry.size;
      if (entry.type !== 'commit') item.url = `${base}/git/${kind}/${entry.sha}`;
      return item;
    }),
    truncated: false,
  };
}

async function getTree(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const treeSha = await resolveTree(repository.gitDir, param(context, 'tree_sha'));
  if (!treeSha) {
    throw new FakeGitHubError(404, 'Not Found', `${gitDocs}/trees#get-a-tree`);
  }
  const recursive = context.url.searchParams.has('recursive');
  return json(200, await treePayload(context.state, repository, treeSha, recursive));
}

async function createTree(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const { gitDir } = repository;
  const { base_tree: baseTree, tree } = body(context);
  if (!Array.isArray(tree)) {
    throw invalid('Invalid request.\n\n"tree" wasn\'t supplied.');
  }
  let baseTreeSha: string | null = null;
  if (baseTree !== undefined && baseTree !== null) {
    if (typeof baseTree !== 'string' || (await objectType(gitDir, baseTree)) !== 'tree') {
      throw invalid(`Invalid tree info: base_tree ${JSON.stringify(baseTree)} is not a tree`);
    }
    baseTreeSha = baseTree;
  }
  const touchesWorkflows = (tree as Record<string, unknown>[]).some(
    ({ path }) =>
      typeof path === 'string' && (path === workflowFolder || path.startsWith(`${workflowFolder}/`)),
  );
  if (touchesWorkflows) requireWritePermission(context, 'workflows', `${gitDocs}/trees#create-a-tree`);
  const changes: TreeChange[] = [];
  for (const [index, entry] of (tree as Record<string, unknown>[]).entries()) {
    const path = entry.path;
    const mode = String(entry.mode ?? '');
    if (typeof path !== 'string' || path === '' || path.startsWith('/')) {
      throw invalid(`Invalid tree info: tree[${index}].path is invalid`);
    }
    if (!treeModes.includes(mode)) {
      throw invalid(`Invalid tree info: tree[${index}].mode ${JSON.stringify(mode)} is invalid`);
    }
    if (entry.content !== undefined) {
      const sha = await writeBlob(gitDir, Buffer.from(String(entry.content), 'utf8'));
      changes.push({ path, mode, sha });
    } else if (entry.sha === null) {
      changes.push({ path, mode, sha: null });
    } else {
      const sha = String(entry.sha ?? '');
      const expected = objectTypeOfMode[mode] ?? 'blob';
      if (expected !== 'commit' && (await objectType(gitDir, sha)) !== expected) {
        throw invalid(`Invalid tree info: tree.sha ${sha} is not a valid ${expected}`);
      }
      changes.push({ path, mode, sha });
    }
  }
  const sha = await writeTree(gitDir, baseTreeSha, changes);
  return json(201, await treePayload(context.state, repository, sha, false), {
    location: `${apiBase(context.state, repository)}/git/trees/${sha}`,
  });
}

/**
 * Builds the `verification` of a commit as GitHub reports it: verified with a signature for a
 * commit that GitHub signed (see `FakeState.signedCommits`), and unsigned for any other. The
 * signature is a placeholder, because no client of the fake checks it.
 */
export async function commitVerification(state: FakeState, repository: RepositoryRecord, sha: string) {
  if (!state.signedCommits.has(sha)) {
    return { verified: false, reason: 'unsigned', signature: null, payload: null, verified_at: null };
  }
  return {
    verified: true,
    reason: 'valid',
    signature: '-----BEGIN PGP SIGNATURE-----\n\nfake signature\n-----END PGP SIGNATURE-----\n',
    payload: await commitText(repository.gitDir, sha),
    verified_at: githubTimestamp(new Date()),
  };
}

async function commitPayload(state: FakeState, repository: RepositoryRecord, commit: CommitObject) {
  const base = apiBase(state, repository);
  const web = `${state.baseUrl}/${repository.owner}/${repository.repo}`;
  return {
    sha: commit.sha,
    node_id: nodeId('Commit', `${repository.id}:${commit.sha}`),
    url: `${base}/git/commits/${commit.sha}`,
    html_url: `${web}/commit/${commit.sha}`,
    author: commit.author,
    committer: commit.committer,
    tree: { sha: commit.tree, url: `${base}/git/trees/${commit.tree}` },
    message: commit.message,
    parents: commit.parents.map((parent) => ({
      sha: parent,
      url: `${base}/git/commits/${parent}`,
      html_url: `${web}/commit/${parent}`,
    })),
    verification: await commitVerification(state, repository, commit.sha),
  };
}

function identity(value: unknown, fallback: { name: string; email: string; date: string }) {
  const given = (value ?? {}) as Record<string, unknown>;
  return {
    name: typeof given.name === 'string' ? given.name : fallback.name,
    email: typeof given.email === 'string' ? given.email : fallback.email,
    date: typeof given.date === 'string' ? given.date : fallback.date,
  };
}

async function createCommit(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const { gitDir } = repository;
  const request = body(context);
  if (typeof request.message !== 'string') {
    throw invalid('Invalid request.\n\n"message" wasn\'t supplied.');
  }
  const tree = String(request.tree ?? '');
  if ((await objectType(gitDir, tree)) !== 'tree') {
    throw invalid('Tree SHA does not exist');
  }
  const parents = Array.isArray(request.parents) ? request.parents.map(String) : [];
  for (const parent of parents) {
    if ((await objectType(gitDir, parent)) !== 'commit') {
      throw invalid('Parent SHA does not exist or is not a commit object');
    }
  }
  // Without a custom author or committer, GitHub authors the commit as the app's bot user,
  // commits it as itself and signs it. A custom identity leaves the commit unsigned.
  const date = githubTimestamp(new Date());
  const signed = request.author === undefined && request.committer === undefined;
  const author = identity(request.author, { ...appBotCommitIdentity(context.state), date });
  const committer = signed
    ? { ...webCommitterIdentity(context.state), date }
    : identity(request.committer, author);
  const commit = { tree, parents, author, committer, message: request.message };
  const sha = await writeCommit(gitDir, commit);
  if (signed) context.state.signedCommits.add(sha);
  const payload = await commitPayload(context.state, repository, { sha, ...commit });
  return json(201, payload, { location: payload.url });
}

async function getCommit(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const commit = await readCommit(repository.gitDir, param(context, 'commit_sha'));
  if (!commit) {
    throw new FakeGitHubError(404, 'Not Found', `${gitDocs}/commits#get-a-commit-object`);
  }
  return json(200, await commitPayload(context.state, repository, commit));
}

function refPayload(state: FakeState, repository: RepositoryRecord, ref: string, sha: string) {
  const base = apiBase(state, repository);
  return {
    ref,
    node_id: nodeId('Ref', `${repository.id}:${ref}`),
    url: `${base}/git/${ref}`,
    object: { sha, type: 'commit', url: `${base}/git/commits/${sha}` },
  };
}

/** Turns the `heads/main` of a ref URL into `refs/heads/main`, rejecting other namespaces. */
function fullRefName(context: Context): string {
  const ref = param(context, 'ref').replace(/^refs\//, '');
  if (!/^(heads|tags)\/./.test(ref) || ref.split('/').includes('..')) {
    throw new FakeGitHubError(404, 'Not Found', `${gitDocs}/refs#get-a-reference`);
  }
  return `refs/${ref}`;
}

async function getRef(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const ref = fullRefName(context);
  const sha = await readRef(repository.gitDir, ref);
  if (!sha) {
    throw new FakeGitHubError(404, 'Not Found', `${gitDocs}/refs#get-a-reference`);
  }
  return json(200, refPayload(context.state, repository, ref, sha));
}

async function updateRef(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const { gitDir } = repository;
  const ref = fullRefName(context);
  const request = body(context);
  const newSha = String(request.sha ?? '');
  const docs = `${gitDocs}/refs#update-a-reference`;
  const current = await readRef(gitDir, ref);
  if (!current) {
    throw invalid('Reference does not exist', docs);
  }
  if ((await objectType(gitDir, newSha)) !== 'commit') {
    throw invalid('Object does not exist', docs);
  }
  if (request.force !== true && !(await isAncestor(gitDir, current, newSha))) {
    throw invalid('Update is not a fast forward', docs);
  }
  if (!(await compareAndSwapRef(gitDir, ref, newSha, current))) {
    // The ref moved between the check and the write: GitHub rejects such a race the same way.
    throw invalid('Update is not a fast forward', docs);
  }
  if (ref.startsWith('refs/heads/')) {
    const branch = ref.slice('refs/heads/'.length);
    const moved = context.state.movePullRequestHeads(repository, branch, newSha);
    for (const { pullRequest, before } of moved) {
      sendSynchronize(context.state, repository, pullRequest, before);
    }
  }
  return json(200, refPayload(context.state, repository, ref, newSha));
}

/** Wraps a write handler so that it first checks the Contents: write permission, as GitHub does. */
function withContentsWrite(
  handle: (context: Context) => Promise<FakeResponse>,
  documentationUrl: string,
): (context: Context) => Promise<FakeResponse> {
  return async (context) => {
    requireRepository(context);
    requireWritePermission(context, 'contents', documentationUrl);
    return handle(context);
  };
}

export const gitDataRoutes: Route<FakeState>[] = [
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/git/blobs',
    auth: 'installation',
    handle: withContentsWrite(createBlob, `${gitDocs}/blobs#create-a-blob`),
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/trees/:tree_sha',
    auth: 'installation',
    handle: getTree,
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/git/trees',
    auth: 'installation',
    handle: withContentsWrite(createTree, `${gitDocs}/trees#create-a-tree`),
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/commits/:commit_sha',
    auth: 'installation',
    handle: getCommit,
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/git/commits',
    auth: 'installation',
    handle: withContentsWrite(createCommit, `${gitDocs}/commits#create-a-commit`),
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/ref/*ref',
    auth: 'installation',
    handle: getRef,
  },
  {
    method: 'PATCH',
    pattern: '/repos/:owner/:repo/git/refs/*ref',
    auth: 'installation',
    handle: withContentsWrite(updateRef, `${gitDocs}/refs#update-a-reference`),
  },
];
