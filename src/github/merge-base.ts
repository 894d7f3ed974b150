import type { Octokit } from '@octokit/rest';
import { isNotFound } from './file-content.ts';

/**
 * Reads the merge base of two commits, branches or tags from GitHub's compare API
 * (`base...head`), the commit that a pull request's diff starts from. Returns null when GitHub
 * responds 404, as it does for an unknown ref and for commits without common history, with the
 * message "No common ancestor between A and B." (as an Octokit error log from 2021 shows it), and
 * for a response whose `merge_base_commit` has no sha.
 */
export async function readMergeBase(
  octokit: Octokit,
  target: { owner: string; repo: string; base: string; head: string },
): Promise<string | null> {
  try {
    // The first page also lists up to 300 changed files, as GitHub's REST docs state; one commit a
    // page keeps the list of commits short.
    const { data } = await octokit.rest.repos.compareCommitsWithBasehead({
      owner: target.owner,
      repo: target.repo,
      basehead: `${target.base}...${target.head}`,
      per_page: 1,
    });
    // The schema requires the commit, but a response without its sha names no merge base either.
    const sha: unknown = data.merge_base_commit?.sha;
    return typeof sha === 'string' && sha !== '' ? sha : null;
  } catch (error) {
    if (isNotFound(error)) {
      return null;
    }
    throw error;
  }
}
