import { RequestError } from '@octokit/request-error';
import { z } from 'zod';
import { githubLogin, repositoryFullName } from '../events/github-names.ts';
import { splitRepository } from './repository-name.ts';
import { stripNulDeep } from '../text/strip-nul.ts';
import type { GitHubApp } from './app.ts';
import { accessTokenPath } from './installation-unavailable.ts';

/**
 * The fields of GitHub's `pull-request` object that the check reads (schema `pull-request` in
 * @octokit/openapi-types 29). Octokit returns whatever body a 200 response has, such as a
 * proxy's HTML page as a string, and reading `state` of that would find it missing. Timestamps
 * and names are checked again when the check builds an event payload from them.
 */
const pullRequestResponse = z.object({
  number: z.number(),
  state: z.enum(['open', 'closed']),
  title: z.string(),
  updated_at: z.string(),
  closed_at: z.string().nullable(),
  // Required in the OpenAPI schema, but optional here because the check does not read it. A
  // preview that finds the pull request closed reads it to name the merge.
  merged_at: z.string().nullable().optional(),
  head: z.object({
    sha: z.string(),
    ref: z.string(),
    // Null once the head repository was deleted, although the OpenAPI schema types it as an object.
    repo: z.object({ full_name: repositoryFullName }).nullable(),
  }),
  base: z.object({
    sha: z.string(),
    ref: z.string(),
    repo: z.object({
      id: z.number(),
      full_name: repositoryFullName,
      owner: z.object({ id: z.number(), login: githubLogin, type: z.string().optional() }),
      // Required in the OpenAPI schema. A response without it is taken as not archived.
      archived: z.boolean().optional(),
    }),
  }),
});
export type GitHubPullRequest = z.infer<typeof pullRequestResponse>;

/**
 * A pull request as GitHub returns it, `not_found` for a 404, or `other` for a valid pull
 * request that is not the one requested, such as after the repository's old name went to
 * another repository. A retry reads the same one, so `other` is not an error to retry.
 */
export type GitHubPullRequestState =
  | { kind: 'found'; pullRequest: GitHubPullRequest }
  | { kind: 'not_found' }
  | { kind: 'other'; message: string };

/**
 * Reads GET /repos/{owner}/{repo}/pulls/{pull_number} with the installation's token. Octokit's
 * own retries of server errors are turned off, because the caller is a pg-boss job that is
 * retried with backoff. An invalid 200 response throws, and so does a 404 to minting the token,
 * which asInstallationUnavailable reads as an uninstalled app. A valid pull request other than
 * `prNumber` of repository `repositoryId` is returned as `other`.
 */
export async function fetchPullRequestState(
  app: GitHubApp,
  target: { installationId: number; repositoryId: number; repository: string; prNumber: number },
): Promise<GitHubPullRequestState> {
  const [owner, repo] = splitRepository(target.repository);
  try {
    const octokit = await app.installationOctokit(target.installationId);
    const response = await octokit.rest.pulls.get({
      owner,
      repo,
      pull_number: target.prNumber,
      request: { retries: 0 },
    });
    const pullRequest = parsePullRequest(response.data, target);
    const { number, base } = pullRequest;
    if (number !== target.prNumber || base.repo.id !== target.repositoryId) {
      const message =
        `GitHub returned another pull request for GET /repos/${target.repository}/pulls/` +
        `${target.prNumber}: it is #${number} of repository ${base.repo.id}, not ` +
        `#${target.prNumber} of repository ${target.repositoryId}.`;
      return { kind: 'other', message };
    }
    return { kind: 'found', pullRequest };
  } catch (error) {
    if (error instanceof RequestError && error.status === 404 && !isTokenRequest(error)) {
      return { kind: 'not_found' };
    }
    throw error;
  }
}

function isTokenRequest(error: RequestError): boolean {
  return accessTokenPath.test(error.request.url);
}

/**
 * Returns `data` as a pull request. Throws when `data` is not an object, or lacks or mistypes a
 * field. `target` names the request in the message.
 */
function parsePullRequest(
  data: unknown,
  target: { repositoryId: number; repository: string; prNumber: number },
): GitHubPullRequest {
  const request = `GET /repos/${target.repository}/pulls/${target.prNumber}`;
  // The confirm job stores the title and branch names, and PostgreSQL text cannot store NUL.
  const parsed = pullRequestResponse.safeParse(stripNulDeep(data));
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`,
    );
    throw new Error(
      `GitHub returned an invalid pull request for ${request}: ${problems.join('; ')}.`,
    );
  }
  return parsed.data;
}
