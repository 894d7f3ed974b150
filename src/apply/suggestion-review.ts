import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import type { AppBotUser, AppIdentity } from '../github/app-identity.ts';
import {
  gitObjectSha,
  parseGitHubResponse,
  readCheckedPages,
  UnexpectedGitHubAnswerError,
} from '../github/github-response.ts';
import { listPullRequestFiles } from '../github/pull-files.ts';
import { buildFileSuggestions, type SuggestionComment } from './suggestion-comments.ts';
import { UnconfirmedWriteError } from './unconfirmed-write-error.ts';

/**
 * The fields of GitHub's pull request review that Apply reads (schema `pull-request-review` in
 * @octokit/openapi-types 29, which allows a null `commit_id` and a null `user`).
 */
const reviewSchema = z.object({
  id: z.number(),
  body: z.string(),
  commit_id: gitObjectSha('commit').nullable(),
  user: z.object({ id: z.number(), type: z.string() }).nullable(),
});

/** GitHub rejects review bodies longer than 65536 characters. */
const maxReviewBodyLength = 65536;

export interface SuggestionTarget {
  owner: string;
  repo: string;
  pullNumber: number;
  /** The previewed head commit; the review's comments refer to its lines. */
  headSha: string;
  patchRequestId: string;
  /** This GitHub App, whose bot user alone may have written the patch request's review. */
  app: AppIdentity;
}

export interface SuggestionFile {
  path: string;
  originalText: string;
  proposedText: string;
}

export interface PostedReview {
  reviewId: number;
  comments: number;
  /** Files with changes that cannot be suggestions, shown in the review body. */
  outsideDiffFiles: string[];
}

/** The review body's list of the reasons why `buildFileSuggestions` leaves a change out. */
const manualChangeReasons = [
  'These changes cannot be suggestions, because each one:',
  "- touches lines that are not all in one hunk of this pull request's diff,",
  "- changes a file's final line break, or the last line of a file without one, where " +
    'accepting a suggestion may add a line break,',
  '- or would make a suggestion too long for a review comment.',
].join('\n');

function fence(info: string, text: string): string {
  let longestRun = 0;
  for (const run of text.match(/`+/g) ?? []) longestRun = Math.max(longestRun, run.length);
  const marker = '`'.repeat(Math.max(3, longestRun + 1));
  return `${marker}${info}\n${text.replace(/\n$/, '')}\n${marker}`;
}

function reviewBody(target: SuggestionTarget, fileCount: number, outsideDiffs: string[]): string {
  const files = fileCount === 1 ? '1 file' : `${fileCount} files`;
  const intro =
    `Fixwright suggests fixes in ${files} from patch request ` +
    `${target.patchRequestId}, previewed at ${target.headSha.slice(0, 7)}.`;
  if (outsideDiffs.length === 0) return intro;
  const diff = fence('diff', outsideDiffs.join(''));
  const body = [intro, '', manualChangeReasons, '', 'Apply them by hand:', '', diff].join('\n');
  if (body.length <= maxReviewBodyLength) return body;
  const tooLong =
    'The diff is too long to show here; fetch the patch request from the API for the full diff.';
  return [intro, '', manualChangeReasons, '', tooLong].join('\n');
}

/**
 * Posts one COMMENT review on the pull request whose comments carry ```suggestion blocks for
 * the changes that `buildFileSuggestions` can suggest, and whose body carries the other changes
 * as a ```diff block. The caller checks first that the pull request's head is still `headSha`.
 * Raises `SuggestionDiffError` before posting anything when a file's diff cannot finish, and
 * UnconfirmedWriteError when the post may have taken effect and the read of the reviews that
 * checks it failed, also when GitHub rate-limited that read.
 */
export async function postSuggestionReview(
  octokit: Octokit,
  target: SuggestionTarget,
  files: readonly SuggestionFile[],
): Promise<PostedReview> {
  const repository = { owner: target.owner, repo: target.repo };
  const changed = await listPullRequestFiles(octokit, {
    ...repository,
    pullNumber: target.pullNumber,
  });
  const patches = new Map(changed.map((file) => [file.filename, file.patch ?? null]));

  const comments: SuggestionComment[] = [];
  const outsideDiffs: string[] = [];
  const outsideDiffFiles: string[] = [];
  for (const file of files) {
    const suggestions = await buildFileSuggestions({
      ...file,
      pullRequestPatch: patches.get(file.path) ?? null,
    });
    comments.push(...suggestions.comments);
    if (suggestions.outsideDiff) {
      outsideDiffs.push(suggestions.outsideDiff);
      outsideDiffFiles.push(file.path);
    }
  }

  // A review is not idempotent: one posted by an earlier attempt (whose response was lost, or
  // whose claim went stale) is found by its author and the patch request id in its body, and kept.
  const posted = await findPostedReview(octokit, target);
  if (posted !== null) return { reviewId: posted, comments: comments.length, outsideDiffFiles };
  try {
    const response = await octokit.rest.pulls.createReview({
      ...repository,
      pull_number: target.pullNumber,
      commit_id: target.headSha,
      event: 'COMMENT',
      body: reviewBody(target, files.length, outsideDiffs),
      comments,
      // A 5xx may come after GitHub created the review; the check below decides instead.
      request: { retries: 0 },
    });
    const review = parseGitHubResponse(reviewSchema.pick({ id: true }), 'POST', response);
    return { reviewId: review.id, comments: comments.length, outsideDiffFiles };
  } catch (error) {
    // An invalid response, like a 5xx, may come after GitHub created the review. Raising it at
    // once would release the claim with the review unrecorded, and a later apply as a commit
    // would apply the same fixes again.
    const status = (error as { status?: number }).status;
    const mayHavePosted =
      error instanceof UnexpectedGitHubAnswerError || status === undefined || status >= 500;
    if (!mayHavePosted) throw error;
    let created;
    try {
      created = await findPostedReview(octokit, target);
    } catch (readError) {
      throw new UnconfirmedWriteError('suggestions', null, error, readError);
    }
    if (created === null) throw error;
    return { reviewId: created, comments: comments.length, outsideDiffFiles };
  }
}

/**
 * Returns the id of this patch request's review at `headSha`, or null when there is none. Only
 * a review written by the app's bot user counts. The patch request id is shown with the
 * "Fix with AI" notice, so anyone who can review the pull request can post a body that names it.
 * GitHub records a review posted with an installation token as written by the bot user, with
 * `user.type` "Bot" and `user.login` `SLUG[bot]`. The bot user is compared by its account id.
 */
export async function findPostedReview(octokit: Octokit, target: SuggestionTarget): Promise<number | null> {
  const pages = readCheckedPages(
    octokit,
    'GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews',
    { owner: target.owner, repo: target.repo, pull_number: target.pullNumber, per_page: 100 },
    reviewSchema,
  );
  const marker = `from patch request ${target.patchRequestId},`;
  // Read only when a review names the patch request, so most applies send no extra request.
  let bot: AppBotUser | undefined;
  for await (const { items } of pages) {
    for (const review of items) {
      if (review.commit_id !== target.headSha || !review.body.includes(marker)) continue;
      bot ??= await target.app.botUser(octokit);
      if (review.user?.type === 'Bot' && review.user.id === bot.id) return review.id;
    }
  }
  return null;
}
