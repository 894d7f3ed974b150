import { appBotLogin, appSummary } from './app.ts';
import { nodeId, userPayload } from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type Route } from './router.ts';
import {
  githubTimestamp,
  json,
  paginate,
  param,
  requireRepository,
  type Context,
} from './route-helpers.ts';
import type { FakeState, IssueCommentRecord } from './state.ts';

/**
 * Issue comments of the fake: list (paginated, oldest first), create, get and update. Comments
 * made with an installation token are written by the app's bot user, `fixwright[bot]`.
 */

const commentsDocs = 'https://docs.github.com/rest/issues/comments';

export function issueCommentPayload(state: FakeState, record: IssueCommentRecord) {
  const apiBase = `${state.baseUrl}/repos/${record.owner}/${record.repo}`;
  const webBase = `${state.baseUrl}/${record.owner}/${record.repo}`;
  const user = userPayload(state.baseUrl, record.user);
  return {
    url: `${apiBase}/issues/comments/${record.id}`,
    html_url: `${webBase}/pull/${record.issueNumber}#issuecomment-${record.id}`,
    issue_url: `${apiBase}/issues/${record.issueNumber}`,
    id: record.id,
    node_id: nodeId('IssueComment', String(record.id)),
    user: { ...user, type: record.userType },
    created_at: record.createdAt,
    updated_at: record.updatedAt,
    author_association: record.userType === 'Bot' ? 'NONE' : 'CONTRIBUTOR',
    body: record.body,
    performed_via_github_app:
      record.installationId === null
        ? null
        : appSummary(state),
  };
}

function readCommentBody(context: Context): string {
  const body = context.request.body as { body?: unknown } | undefined;
  if (typeof body?.body !== 'string' || body.body === '') {
    throw new FakeGitHubError(422, 'Validation Failed: body is missing', commentsDocs);
  }
  if (body.body.length > 65536) {
    const message = 'Validation Failed: body is too long (maximum is 65536 characters)';
    throw new FakeGitHubError(422, message, commentsDocs);
  }
  return body.body;
}

function sameRepository(record: IssueCommentRecord, owner: string, repo: string): boolean {
  return (
    record.owner.toLowerCase() === owner.toLowerCase() &&
    record.repo.toLowerCase() === repo.toLowerCase()
  );
}

function listComments(context: Context): FakeResponse {
  const repository = requireRepository(context);
  const issueNumber = Number(param(context, 'issue_number'));
  const comments = [...context.state.issueComments.values()]
    .filter(
      (record) =>
        sameRepository(record, repository.owner, repository.repo) &&
        record.issueNumber === issueNumber,
    )
    .sort((left, right) => left.id - right.id)
    .map((record) => issueCommentPayload(context.state, record));
  const linkPath = `/repositories/${repository.id}/issues/${issueNumber}/comments`;
  const { page, link } = paginate(comments, context.url, context.state.baseUrl, linkPath);
  return json(200, page, link ? { link } : undefined);
}

function createComment(context: Context): FakeResponse {
  const repository = requireRepository(context);
  const issueNumber = Number(param(context, 'issue_number'));
  context.state.requirePullRequest(repository, issueNumber);
  const now = githubTimestamp(new Date());
  const record: IssueCommentRecord = {
    id: context.state.nextId(),
    owner: repository.owner,
    repo: repository.repo,
    issueNumber,
    body: readCommentBody(context),
    user: appBotLogin,
    userType: 'Bot',
    installationId:
      context.credential.kind === 'installation' ? context.credential.installationId : null,
    createdAt: now,
    updatedAt: now,
  };
  context.state.issueComments.set(record.id, record);
  return json(201, issueCommentPayload(context.state, record), {
    location: `${issueCommentPayload(context.state, record).url}`,
  });
}

function requireComment(context: Context): IssueCommentRecord {
  const repository = requireRepository(context);
  const record = context.state.issueComments.get(Number(param(context, 'comment_id')));
  if (!record || !sameRepository(record, repository.owner, repository.repo)) {
    throw new FakeGitHubError(404, 'Not Found', commentsDocs);
  }
  return record;
}

function getComment(context: Context): FakeResponse {
  return json(200, issueCommentPayload(context.state, requireComment(context)));
}

function updateComment(context: Context): FakeResponse {
  const record = requireComment(context);
  record.body = readCommentBody(context);
  record.updatedAt = githubTimestamp(new Date());
  return json(200, issueCommentPayload(context.state, record));
}

export const issueCommentRoutes: Route<FakeState>[] = [
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/issues/:issue_number/comments',
    auth: 'installation',
    handle: listComments,
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/issues/:issue_number/comments',
    auth: 'installation',
    handle: createComment,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/issues/comments/:comment_id',
    auth: 'installation',
    handle: getComment,
  },
  {
    method: 'PATCH',
    pattern: '/repos/:owner/:repo/issues/comments/:comment_id',
    auth: 'installation',
    handle: updateComment,
  },
];
