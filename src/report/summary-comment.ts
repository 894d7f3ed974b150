import type { Octokit } from '@octokit/rest';
import { and, eq, sql } from 'drizzle-orm';
import { z } from 'zod';
import { isNotFound, mayHaveWritten } from '../github/request-errors.ts';
import { parseGitHubResponse, readCheckedPages } from '../github/github-response.ts';
import { splitRepository } from '../github/repository-name.ts';
import type { Database, Transaction } from '../db/client.ts';
import { prRuns, summaryComments } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { summaryMarker } from './summary-markdown.ts';

export interface SummaryCommentTarget {
  runId: string;
  repositoryId: number;
  repository: string;
  prNumber: number;
  /** Id of this GitHub App, whose comments alone may be the summary. */
  appId: number;
}

/**
 * The fields of GitHub's issue comment (schema `issue-comment` in @octokit/openapi-types 29)
 * that the summary reads, for parseGitHubResponse. That schema makes `body` optional, and
 * `performed_via_github_app` optional and nullable.
 */
const issueCommentSchema = z.object({
  id: z.number().int().positive(),
  body: z.string().optional(),
  performed_via_github_app: z.object({ id: z.number() }).nullish(),
});
const writtenCommentSchema = issueCommentSchema.pick({ id: true });

export type SummaryCommentOutcome =
  | { action: 'created' | 'updated'; commentId: number }
  | { action: 'skipped'; reason: string };

/**
 * Finds Fixwright's comment among all comments of the pull request by the hidden marker. Only
 * comments made through this app count. A user, or another app's bot that echoes text, may
 * post the marker too, and the summary must not overwrite their comment. An invalid page of
 * comments raises UnexpectedGitHubAnswerError.
 */
async function findMarkedComment(
  octokit: Octokit,
  target: { owner: string; repo: string; issueNumber: number; appId: number },
): Promise<number | null> {
  const pages = readCheckedPages(
    octokit,
    'GET /repos/{owner}/{repo}/issues/{issue_number}/comments',
    {
      owner: target.owner,
      repo: target.repo,
      issue_number: target.issueNumber,
      per_page: 100,
    },
    issueCommentSchema,
  );
  for await (const { items } of pages) {
    const marked = items.find(
      (comment) =>
        comment.performed_via_github_app?.id === target.appId &&
        (comment.body ?? '').includes(summaryMarker),
    );
    if (marked) return marked.id;
  }
  return null;
}

/** Edits the summary comment. The response is checked, because a proxy's page may replace it. */
async function updateComment(
  octokit: Octokit,
  target: { owner: string; repo: string; commentId: number },
  body: string,
): Promise<void> {
  const response = await octokit.rest.issues.updateComment({
    owner: target.owner,
    repo: target.repo,
    comment_id: target.commentId,
    body,
  });
  parseGitHubResponse(writtenCommentSchema, 'PATCH', response);
}

/**
 * Posts the summary comment once. A server error or an invalid response may come after GitHub
 * created the comment, so the comment is looked for by its marker instead of being posted again.
 */
async function createComment(
  octokit: Octokit,
  target: { owner: string; repo: string; issueNumber: number; appId: number },
  body: string,
): Promise<number> {
  try {
    const response = await octokit.rest.issues.createComment({
      owner: target.owner,
      repo: target.repo,
      issue_number: target.issueNumber,
      body,
      request: { retries: 0 },
    });
    return parseGitHubResponse(writtenCommentSchema, 'POST', response).id;
  } catch (error) {
    if (!mayHaveWritten(error)) throw error;
    const created = await findMarkedComment(octokit, target);
    if (created === null) throw error;
    return created;
  }
}

/** Locks the pull request's summary row, creating it first, until the transaction ends. */
async function lockSummaryRow(tx: Transaction, target: SummaryCommentTarget) {
  await tx
    .insert(summaryComments)
    .values({ repositoryId: target.repositoryId, prNumber: target.prNumber })
    .onConflictDoNothing();
  const [row] = await tx
    .select()
    .from(summaryComments)
    .where(
      and(
        eq(summaryComments.repositoryId, target.repositoryId),
        eq(summaryComments.prNumber, target.prNumber),
      ),
    )
    .for('update');
  return row!;
}

/**
 * Creates or edits the one summary comment of a pull request. The pull request's row in
 * summary_comments stays locked while GitHub is called, so concurrent reports of the same
 * pull request run one after another and the second edits the comment the first created.
 * A run superseded by a newer commit leaves the comment alone.
 */
export async function upsertSummaryComment(
  db: Database,
  octokit: Octokit,
  target: SummaryCommentTarget,
  body: string,
  logger: Logger,
): Promise<SummaryCommentOutcome> {
  const [owner, repo] = splitRepository(target.repository);
  const issue = { owner, repo, issueNumber: target.prNumber, appId: target.appId };

  return db.transaction(async (tx) => {
    const row = await lockSummaryRow(tx, target);
    const [run] = await tx
      .select({ status: prRuns.status })
      .from(prRuns)
      .where(eq(prRuns.id, target.runId));
    if (!run || run.status !== 'completed') {
      return { action: 'skipped', reason: `run is ${run?.status ?? 'deleted'}` } as const;
    }

    let commentId = row.commentId;
    if (commentId !== null) {
      try {
        await updateComment(octokit, { owner, repo, commentId }, body);
      } catch (error) {
        if (!isNotFound(error)) throw error;
        logger.warn(
          { event: 'report.comment_missing', commentId },
          'summary comment was deleted; posting it again',
        );
        commentId = null;
      }
    }
    let action: 'created' | 'updated' = 'updated';
    if (commentId === null) {
      commentId = await findMarkedComment(octokit, issue);
      if (commentId !== null) {
        await updateComment(octokit, { owner, repo, commentId }, body);
      } else {
        commentId = await createComment(octokit, issue, body);
        action = 'created';
      }
    }

    await tx
      .update(summaryComments)
      .set({ commentId, runId: target.runId, updatedAt: sql`now()` })
      .where(
        and(
          eq(summaryComments.repositoryId, target.repositoryId),
          eq(summaryComments.prNumber, target.prNumber),
        ),
      );
    logger.info({ event: `report.comment_${action}`, commentId }, `summary comment ${action}`);
    return { action, commentId };
  });
}
