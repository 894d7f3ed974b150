import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import { isNotFound } from './request-errors.ts';
import { gitObjectSha, parseGitHubResponse } from './github-response.ts';

/**
 * The field of the compare API's response that readMergeBase reads (schema `commit-comparison`
 * in @octokit/openapi-types 29). That schema requires the commit and its sha, but a null commit,
 * or one without a sha or with an empty one, names no merge base either.
 */
const comparisonSchema = z.object({
  merge_base_commit: z
    .object({
      sha: z.preprocess((sha) => (sha === '' ? null : sha), gitObjectSha('commit').nullish()),
    })
    .nullable(),
});

/**
 * Reads the merge base of two commits, branches or tags from GitHub's compare API
 * (`base...head`), the commit that a pull request's diff starts from. Returns null when GitHub
 * responds 404, as it does for an unknown ref and for commits without common history, with the
 * message "No common ancestor between A and B." (as an Octokit error log from 2021 shows it), and
 * for a response whose `merge_base_commit` is null or has no sha. Any other response that lacks
 * or mistypes that field, such as a proxy's HTML page, raises UnexpectedGitHubAnswerError.
 */
export async function readMergeBase(
  octokit: Octokit,
  target: { owner: string; repo: string; base: string; head: string },
): Promise<string | null> {
  let response;
  try {
    // The first page also lists up to 300 changed files, as GitHub's REST docs state; one commit a
    // page keeps the list of commits short.
    response = await octokit.rest.repos.compareCommitsWithBasehead({
      owner: target.owner,
      repo: target.repo,
      basehead: `${target.base}...${target.head}`,
      per_page: 1,
    });
  } catch (error) {
    if (isNotFound(error)) {
      return null;
    }
    throw error;
  }
  const comparison = parseGitHubResponse(comparisonSchema, 'GET', response);
  return comparison.merge_base_commit?.sha ?? null;
}
