import { nodeId, userPayload } from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type Route } from './router.ts';
import {
  cachedDiff,
  githubTimestamp,
  json,
  param,
  requireRepository,
  requireWritePermission,
  type Context,
} from './route-helpers.ts';
import { appBotLogin } from './app.ts';
import type { FakeState, ReviewCommentRecord, ReviewRecord } from './state.ts';

/**
 * Pull request reviews of the fake. Like GitHub, it rejects a review comment whose lines are not
 * part of the pull request's diff at `commit_id`, and a multi-line comment whose start line is
 * in another hunk than its end line. The wording of the 422 errors is the fake's own.
 */

const reviewsDocs = 'https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request';
const events = ['APPROVE', 'REQUEST_CHANGES', 'COMMENT'];
const reviewStates: Record<string, string> = {
  APPROVE: 'APPROVED',
  REQUEST_CHANGES: 'CHANGES_REQUESTED',
  COMMENT: 'COMMENTED',
};

interface HunkRanges {
  oldStart: number;
  oldEnd: number;
  newStart: number;
  newEnd: number;
}

const hunkHeader = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/;

/** Reads the old and new line range of every hunk of a `patch` field. */
export function hunkRanges(patch: string): HunkRanges[] {
  const ranges: HunkRanges[] = [];
  for (const line of patch.split('\n')) {
    const match = hunkHeader.exec(line);
    if (!match) continue;
    const oldStart = Number(match[1]);
    const oldCount = Number(match[2] ?? '1');
    const newStart = Number(match[3]);
    const newCount = Number(match[4] ?? '1');
    ranges.push({
      oldStart,
      oldEnd: oldStart + oldCount - 1,
      newStart,
      newEnd: newStart + newCount - 1,
    });
  }
  return ranges;
}

function unprocessable(reason: string): FakeGitHubError {
  return new FakeGitHubError(422, `Unprocessable Entity: ${reason}`, reviewsDocs);
}

function reviewPayload(state: FakeState, review: ReviewRecord) {
  const { owner, repo, pullNumber } = review;
  const pullUrl = `${state.baseUrl}/repos/${owner}/${repo}/pulls/${pullNumber}`;
  const pullHtmlUrl = `${state.baseUrl}/${owner}/${repo}/pull/${pullNumber}`;
  const htmlUrl = `${pullHtmlUrl}#pullrequestreview-${review.id}`;
  return {
    id: review.id,
    node_id: nodeId('PullRequestReview', String(review.id)),
    user: { ...userPayload(state.baseUrl, review.user), type: review.userType },
    body: review.body,
    state: review.state,
    html_url: htmlUrl,
    pull_request_url: pullUrl,
    author_association: 'NONE',
    _links: { html: { href: htmlUrl }, pull_request: { href: pullUrl } },
    submitted_at: review.submittedAt,
    commit_id: review.commitId,
  };
}

function lineNumber(value: unknown, name: string, index: number): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) {
    throw unprocessable(`comments[${index}].${name} must be a positive line number`);
  }
  return number;
}

async function createReview(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const pullNumber = Number(param(context, 'pull_number'));
  const pullRequest = context.state.requirePullRequest(repository, pullNumber);
  requireWritePermission(context, 'pull_requests', reviewsDocs);
  const request = (context.request.body ?? {}) as Record<string, unknown>;
  const event = String(request.event ?? 'PENDING');
  if (request.event !== undefined && !events.includes(event)) {
    throw unprocessable(`event ${JSON.stringify(event)} is invalid`);
  }
  const commitId = typeof request.commit_id === 'string' ? request.commit_id : pullRequest.headSha;
  const entries = await cachedDiff(repository.gitDir, pullRequest.baseSha, commitId).catch(() => {
    throw unprocessable(`commit_id ${commitId} is not part of the pull request`);
  });
  const rawComments = Array.isArray(request.comments) ? request.comments : [];

  const comments: ReviewCommentRecord[] = rawComments.map(
    (raw: Record<string, unknown>, index): ReviewCommentRecord => {
      const path = String(raw.path ?? '');
      const entry = entries.find((candidate) => candidate.filename === path);
      if (!entry || entry.patch === null) {
        throw unprocessable(`Path ${JSON.stringify(path)} is not part of the pull request's diff`);
      }
      const side = raw.side === 'LEFT' ? 'LEFT' : 'RIGHT';
      const line = lineNumber(raw.line, 'line', index);
      const startLine =
        raw.start_line === undefined || raw.start_line === null
          ? null
          : lineNumber(raw.start_line, 'start_line', index);
      if (startLine !== null && startLine >= line) {
        throw unprocessable(`comments[${index}].start_line must precede line`);
      }
      const first = startLine ?? line;
      const hunk = hunkRanges(entry.patch).find((range) =>
        side === 'RIGHT'
          ? range.newStart <= first && line <= range.newEnd
          : range.oldStart <= first && line <= range.oldEnd,
      );
      if (!hunk) {
        throw unprocessable(
          `Pull request review thread line ${line} of ${path} must be part of the diff, and ` +
            'its start line must be part of the same hunk',
        );
      }
      if (typeof raw.body !== 'string') {
        throw unprocessable(`comments[${index}].body is missing`);
      }
      let startSide: ReviewCommentRecord['startSide'] = null;
      if (startLine !== null) {
        startSide = raw.start_side === 'LEFT' ? 'LEFT' : 'RIGHT';
      }
      return { id: context.state.nextId(), path, body: raw.body, line, side, startLine, startSide };
    },
  );
  if (event === 'COMMENT' && comments.length === 0 && !request.body) {
    throw unprocessable('a COMMENT review needs a body or comments');
  }

  const review: ReviewRecord = {
    id: context.state.nextId(),
    owner: repository.owner,
    repo: repository.repo,
    pullNumber,
    commitId,
    body: typeof request.body === 'string' ? request.body : '',
    event,
    state: reviewStates[event] ?? 'PENDING',
    user: appBotLogin,
    userType: 'Bot',
    submittedAt: githubTimestamp(new Date()),
    comments,
  };
  context.state.reviews.push(review);
  return json(200, reviewPayload(context.state, review));
}

/** Lists a pull request's reviews, oldest first, as GitHub does. */
async function listReviews(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const pullNumber = Number(param(context, 'pull_number'));
  context.state.requirePullRequest(repository, pullNumber);
  const reviews = context.state.reviews.filter(
    (review) =>
      review.owner === repository.owner &&
      review.repo === repository.repo &&
      review.pullNumber === pullNumber,
  );
  return json(200, reviews.map((review) => reviewPayload(context.state, review)));
}

export const reviewRoutes: Route<FakeState>[] = [
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/pulls/:pull_number/reviews',
    auth: 'installation',
    handle: listReviews,
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/pulls/:pull_number/reviews',
    auth: 'installation',
    handle: createReview,
  },
];
