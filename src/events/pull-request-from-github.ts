import { and, desc, eq, max } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { prRuns } from '../db/schema/index.ts';
import type { GitHubPullRequest } from '../github/pull-request-state.ts';
import type { ConfirmPullRequestJobData } from '../jobs/confirm-pull-request-queue.ts';
import { pullRequestPayload, type PullRequestPayload } from './pull-request.ts';

/**
 * Returns the `synchronize` event that creates the run of GitHub's head commit, or analyzes it
 * again when a newer commit superseded it (a force push back to it). The event has GitHub's
 * `updated_at`, so it supersedes the runs of older commits. A push whose `synchronize` event was
 * skipped or lost, because the installation was suspended or Fixwright was down, leaves such a
 * head commit.
 *
 * Returns null when the run of the head commit exists otherwise. A cancelled one stays
 * cancelled, because a close, a suspend or an uninstall cancelled it, and a push or a reopen
 * starts it again. Also returns null when a run records a later event than GitHub's
 * `updated_at`, because the response then lags behind the events.
 */
export async function headChangeEvent(
  tx: Transaction,
  data: ConfirmPullRequestJobData,
  pullRequest: GitHubPullRequest,
): Promise<PullRequestPayload | null> {
  const ofPullRequest = and(
    eq(prRuns.repositoryId, data.repositoryId),
    eq(prRuns.prNumber, data.prNumber),
  );
  const [latest] = await tx
    .select({ updatedAt: max(prRuns.prUpdatedAt) })
    .from(prRuns)
    .where(ofPullRequest);
  if (latest?.updatedAt && latest.updatedAt > new Date(pullRequest.updated_at)) return null;
  const [run] = await tx
    .select({ status: prRuns.status })
    .from(prRuns)
    .where(and(ofPullRequest, eq(prRuns.headSha, pullRequest.head.sha)));
  if (run && run.status !== 'superseded') return null;
  return eventPayload('synchronize', data, pullRequest);
}

/**
 * Returns the `edited` event that moves the run of GitHub's head commit to GitHub's base branch,
 * or null when that run has it already. A head commit without a run is left to headChangeEvent,
 * whose `synchronize` event carries GitHub's base branch.
 */
export async function baseChangeEvent(
  tx: Transaction,
  data: ConfirmPullRequestJobData,
  pullRequest: GitHubPullRequest,
): Promise<PullRequestPayload | null> {
  const [run] = await tx
    .select({ baseRef: prRuns.baseRef })
    .from(prRuns)
    .where(
      and(
        eq(prRuns.repositoryId, data.repositoryId),
        eq(prRuns.prNumber, data.prNumber),
        eq(prRuns.headSha, pullRequest.head.sha),
      ),
    )
    .orderBy(desc(prRuns.createdAt))
    .limit(1);
  if (!run || run.baseRef === pullRequest.base.ref) return null;
  const event = eventPayload('edited', data, pullRequest);
  event.changes = { base: { ref: { from: run.baseRef } } };
  return event;
}

/**
 * Builds the webhook payload of `action` from GitHub's pull request, validated as a delivered
 * payload is. A close gets GitHub's `closed_at` as its time, as the `closed` handler reads it.
 */
export function eventPayload(
  action: 'closed' | 'reopened' | 'edited' | 'synchronize',
  data: ConfirmPullRequestJobData,
  pullRequest: GitHubPullRequest,
): PullRequestPayload {
  const { base, head } = pullRequest;
  return pullRequestPayload.parse({
    action,
    number: pullRequest.number,
    installation: { id: data.installationId },
    repository: {
      id: base.repo.id,
      full_name: base.repo.full_name,
      owner: base.repo.owner,
      archived: base.repo.archived,
    },
    pull_request: {
      title: pullRequest.title,
      state: pullRequest.state,
      updated_at: pullRequest.updated_at,
      closed_at: pullRequest.closed_at,
      head: { sha: head.sha, ref: head.ref, repo: head.repo },
      base: { sha: base.sha, ref: base.ref },
    },
  });
}
