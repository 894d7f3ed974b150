import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import { readCheckedPages } from './github-response.ts';

/** GitHub lists at most this many files of a pull request and leaves out the rest. */
export const maxListedPullRequestFiles = 3000;

export interface PullRequestFile {
  filename: string;
  /** added, removed, modified, renamed, copied, changed or unchanged. */
  status: string;
  /** Unified diff hunks, or null when GitHub sends none (binary files, very large diffs). */
  patch?: string | null;
  /** Path before a rename or copy, set only for renamed and copied files. */
  previousFilename?: string;
  /** Blob sha of the file in the pull request's head. */
  sha: string;
  additions: number;
  deletions: number;
}

/**
 * The fields of GitHub's `diff-entry` (in @octokit/openapi-types 29) that the listing returns.
 * That schema allows a null `sha`, and GitHub leaves out `patch` for binary files and very
 * large diffs.
 */
const diffEntrySchema = z.object({
  filename: z.string(),
  status: z.string(),
  patch: z.string().nullish(),
  previous_filename: z.string().optional(),
  sha: z.string().nullable(),
  additions: z.number(),
  deletions: z.number(),
});

export interface ListFilesOptions {
  /**
   * Runs after each page that GitHub links a next page from, before that page is requested. An
   * error it throws stops the listing and rejects `listPullRequestFiles` with that error, as
   * `runStopCheckpoint` does for a stopped run.
   */
  checkpoint?: () => Promise<void>;
}

/**
 * Lists the files changed by a pull request, following every page (100 files a page). GitHub
 * stops at `maxListedPullRequestFiles`, so a result of that length may be incomplete. A page
 * that lacks a field of its files raises UnexpectedGitHubAnswerError.
 */
export async function listPullRequestFiles(
  octokit: Octokit,
  target: { owner: string; repo: string; pullNumber: number },
  options: ListFilesOptions = {},
): Promise<PullRequestFile[]> {
  const pages = readCheckedPages(
    octokit,
    'GET /repos/{owner}/{repo}/pulls/{pull_number}/files',
    { owner: target.owner, repo: target.repo, pull_number: target.pullNumber, per_page: 100 },
    diffEntrySchema,
  );
  const files = [];
  // Each page is requested only when the loop reads the next one, so a checkpoint that throws
  // here keeps the next page from being requested.
  for await (const page of pages) {
    files.push(...page.items);
    if (options.checkpoint && page.hasNextPage) {
      await options.checkpoint();
    }
  }
  return files.map((file) => {
    const result: PullRequestFile = {
      filename: file.filename,
      status: file.status,
      patch: file.patch ?? null,
      // The schema allows null here, but GitHub sends a blob sha for every listed file.
      sha: file.sha ?? '',
      additions: file.additions,
      deletions: file.deletions,
    };
    if (file.previous_filename !== undefined) {
      result.previousFilename = file.previous_filename;
    }
    return result;
  });
}
