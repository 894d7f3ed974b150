import { z } from 'zod';
import { repositoryFullName } from '../events/github-names.ts';
import { gitObjectSha } from './github-response.ts';

const githubTimestamp = z.iso.datetime({ offset: true });

/**
 * The fields of GitHub's `pulls.get` response that Apply and the analysis read (schema
 * `pull-request` in @octokit/openapi-types 29), for parseGitHubResponse. Each reader picks the
 * fields it reads, so that a response is rejected only for a field that its reader uses.
 * `head.repo` is null once the head repository was deleted, although that schema types it as
 * never null.
 */
export const pullRequestResponse = z.object({
  state: z.enum(['open', 'closed']),
  closed_at: githubTimestamp.nullable(),
  merged_at: githubTimestamp.nullable(),
  updated_at: githubTimestamp,
  /** Number of files the pull request changes, including those past the 3,000 that GitHub lists. */
  changed_files: z.number().int().nonnegative(),
  head: z.object({
    ref: z.string(),
    sha: gitObjectSha('commit'),
    repo: z.object({ id: z.number(), full_name: repositoryFullName }).nullable(),
  }),
  base: z.object({
    ref: z.string().min(1, 'expected a branch name'),
    sha: gitObjectSha('commit'),
    repo: z.object({ id: z.number() }),
  }),
});
