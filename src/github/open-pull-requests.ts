import type { Octokit } from '@octokit/rest';
import { RequestError } from '@octokit/request-error';
import { z } from 'zod';
import { githubId } from '../events/github-id.ts';
import { repositoryFullName } from '../events/github-names.ts';
import { maxInteger } from '../db/schema/columns.ts';
import { splitRepository } from './repository-name.ts';
import { readCheckedPage } from './github-response.ts';
import { accessTokenPath } from './installation-unavailable.ts';

/** Items per page of both listings, the maximum that GitHub's REST API accepts. */
export const listingPageSize = 100;

/**
 * The fields of a repository in GET /installation/repositories that the listing reads (schema
 * `repository` in @octokit/openapi-types 29). The id and name are stored on runs, so they are
 * checked as a webhook payload's are.
 */
const repositoryItem = z.object({ id: githubId, full_name: repositoryFullName });

/** A repository in GET /installation/repositories, where the schema requires `archived`. */
const listedRepositoryItem = repositoryItem.extend({ archived: z.boolean() });

/**
 * The fields of a pull request in GET /repos/{owner}/{repo}/pulls that the listing reads
 * (schema `pull-request-simple` in @octokit/openapi-types 29).
 */
const pullRequestItem = z.object({
  number: z.number().int().positive().max(maxInteger),
  state: z.literal('open'),
  created_at: z.iso.datetime({ offset: true }),
  base: z.object({ repo: repositoryItem }),
});

/** A repository that the installation can access. */
export interface InstallationRepository {
  id: number;
  /** OWNER/NAME. */
  fullName: string;
  /** Whether the repository is archived, so GitHub rejects the app's check runs and comments. */
  archived: boolean;
}

/** An open pull request of an installation's repository. */
export interface OpenPullRequest {
  repositoryId: number;
  /** OWNER/NAME of the base repository. */
  repository: string;
  prNumber: number;
}

/** An open pull request as the listing returns it, with its creation time. */
export interface ListedPullRequest extends OpenPullRequest {
  /** `created_at` as GitHub sent it, an ISO 8601 time. */
  createdAt: string;
}

/**
 * Reads page `page` (from 1) of GET /installation/repositories with the installation's token:
 * the repositories that the installation can access, 100 a page. An invalid page raises
 * UnexpectedGitHubAnswerError.
 */
export async function readInstallationRepositories(
  octokit: Octokit,
  page: number,
): Promise<{ repositories: InstallationRepository[]; hasNextPage: boolean }> {
  const read = await readCheckedPage(
    octokit,
    'GET /installation/repositories',
    { per_page: listingPageSize, page },
    listedRepositoryItem,
    { itemsField: 'repositories' },
  );
  return {
    repositories: read.items.map((item) => ({
      id: item.id,
      fullName: item.full_name,
      archived: item.archived,
    })),
    hasNextPage: read.hasNextPage,
  };
}

/**
 * Reads page `page` (from 1) of the open pull requests of `repository`, oldest first (GET
 * /repos/{owner}/{repo}/pulls?state=open&sort=created&direction=asc), 100 a page. A pull request
 * opened while the listing goes on is therefore added to its end. Returns null for a 404, as
 * GitHub sends once the repository was deleted or removed from the installation, but not for a
 * 404 to minting the installation token, which asInstallationUnavailable reads. A pull request of
 * another repository than `repository.id`, or one that is not open, makes the page invalid and
 * raises UnexpectedGitHubAnswerError like a missing field.
 */
export async function readOpenPullRequests(
  octokit: Octokit,
  repository: Pick<InstallationRepository, 'id' | 'fullName'>,
  page: number,
): Promise<{ pullRequests: ListedPullRequest[]; hasNextPage: boolean } | null> {
  const [owner, repo] = splitRepository(repository.fullName);
  const ofRepository = pullRequestItem.refine((item) => item.base.repo.id === repository.id, {
    message: `expected a pull request of repository ${repository.id}`,
  });
  try {
    const read = await readCheckedPage(
      octokit,
      'GET /repos/{owner}/{repo}/pulls',
      {
        owner,
        repo,
        state: 'open',
        sort: 'created',
        direction: 'asc',
        per_page: listingPageSize,
        page,
      },
      ofRepository,
    );
    return {
      pullRequests: read.items.map((item) => ({
        repositoryId: item.base.repo.id,
        repository: item.base.repo.full_name,
        prNumber: item.number,
        createdAt: item.created_at,
      })),
      hasNextPage: read.hasNextPage,
    };
  } catch (error) {
    // A 404 to minting the installation token means an uninstalled app, not a missing repository.
    if (
      error instanceof RequestError &&
      error.status === 404 &&
      !accessTokenPath.test(error.request.url)
    ) {
      return null;
    }
    throw error;
  }
}
