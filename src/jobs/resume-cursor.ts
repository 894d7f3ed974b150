import type { InstallationRepository, ListedPullRequest } from '../github/open-pull-requests.ts';
import type { PullRequestCursor } from './resume-installation-queue.ts';

/** The cursor of a repository whose pull requests have not been listed yet. */
export const firstPullRequestCursor: PullRequestCursor = { page: 1, createdAt: null, numbers: [] };

/** Returns whether the resume queued `pullRequest` already, by the cursor's position. */
export function isQueuedBefore(cursor: PullRequestCursor, pullRequest: ListedPullRequest): boolean {
  if (cursor.createdAt === null) return false;
  const created = Date.parse(pullRequest.createdAt);
  const last = Date.parse(cursor.createdAt);
  return created < last || (created === last && cursor.numbers.includes(pullRequest.prNumber));
}

/**
 * Returns the listed pull requests that the cursor has not passed, each once, oldest first and
 * by number within a second, the order in which the cursor moves past them.
 */
export function pullRequestsAfter(
  cursor: PullRequestCursor,
  listed: ListedPullRequest[],
): ListedPullRequest[] {
  const byNumber = new Map<number, ListedPullRequest>();
  for (const pullRequest of listed) {
    if (!isQueuedBefore(cursor, pullRequest)) byNumber.set(pullRequest.prNumber, pullRequest);
  }
  return [...byNumber.values()].sort(
    (left, right) =>
      Date.parse(left.createdAt) - Date.parse(right.createdAt) || left.prNumber - right.prNumber,
  );
}

/** Returns the cursor moved past `queued`, pull requests in the order of pullRequestsAfter. */
export function moveCursorPast(
  cursor: PullRequestCursor,
  queued: ListedPullRequest[],
): PullRequestCursor {
  let { createdAt, numbers } = cursor;
  for (const pullRequest of queued) {
    if (createdAt === null || Date.parse(pullRequest.createdAt) > Date.parse(createdAt)) {
      createdAt = pullRequest.createdAt;
      numbers = [pullRequest.prNumber];
    } else {
      numbers = [...numbers, pullRequest.prNumber];
    }
  }
  return { ...cursor, createdAt, numbers };
}

/**
 * The repositories that a resume reads at its page of GET /installation/repositories: those of
 * the page before it, then those of the page, each once.
 */
export interface RepositoryWindow {
  repositories: InstallationRepository[];
  /** Ids of the repositories on the page itself. */
  pageIds: number[];
  /** Whether GitHub has a page after the page itself. */
  hasNextPage: boolean;
}

/** Builds the window of a page from the repositories of the page before it and of the page. */
export function repositoryWindow(
  previous: InstallationRepository[],
  page: { repositories: InstallationRepository[]; hasNextPage: boolean },
): RepositoryWindow {
  const byId = new Map<number, InstallationRepository>();
  for (const repository of [...previous, ...page.repositories]) {
    if (!byId.has(repository.id)) byId.set(repository.id, repository);
  }
  return {
    repositories: [...byId.values()],
    pageIds: page.repositories.map((repository) => repository.id),
    hasNextPage: page.hasNextPage,
  };
}
