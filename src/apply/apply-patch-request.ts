import { and, asc, eq, inArray, isNull, or, sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import { applyModes, patchFiles, patchRequests, prRuns, type ApplyMode } from '../db/schema/index.ts';
import {
  asInstallationUnavailable,
  findInstallationUnavailable,
  recordInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import { parseGitHubResponse } from '../github/github-response.ts';
import { asGitHubRateLimit } from '../github/rate-limit.ts';
import type { Logger } from '../logger.ts';
import { safeErrorMessage } from '../errors/safe-error.ts';
import { listShort, pickForm } from '../text/plural.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { splitRepository } from '../github/repository-name.ts';
import { applyQueue, type ApplyJobData } from '../jobs/apply.ts';
import { recordMovedHead } from '../runs/moved-head.ts';
import {
  findPullRequestClosed,
  pullRequestClosedError,
  type PullRequestClosedError,
} from '../runs/pull-request-closed.ts';
import { queueApplyAfterRateLimit, type ApplyWaiting } from './apply-rate-limit.ts';
import {
  readWorkflowsPermission,
  readWorkflowsPermissionBeforeClaim,
  workflowFilesOf,
  workflowFilesRejection,
} from './workflow-files.ts';
import { ApplyRejectedError } from './apply-rejected-error.ts';
import { releaseApplyClaim } from './apply-claim-release.ts';
import { clearedApplyWait, currentApplyWait, type ApplyWait } from './apply-wait.ts';
import { BranchMovedError, commitFiles, findPushedCommit, PreviewOutdatedError } from './commit-files.ts';
import { asGitHubRejection, describeGitHubRejection } from './github-rejection.ts';
import {
  checkPullRequest,
  closedRejection,
  deletedHeadRejection,
  forkRejection,
  pullRequestStateSchema,
} from './pull-request-check.ts';
import {
  describePreviewChanges,
  findPreviewChanges,
  findUnknownFileIds,
  isApplicableFile,
  type PreviewVersion,
} from './preview-version.ts';
import { SuggestionDiffError } from './suggestion-comments.ts';
import { handleWorkflowsRejection, WorkflowsRejectedError } from './workflows-rejection.ts';
import { hasUnrecordedApply } from './superseded-run.ts';
import { findPostedReview, postSuggestionReview } from './suggestion-review.ts';
import { applyFailureCause, UnconfirmedWriteError } from './unconfirmed-write-error.ts';
import {
  clearedUnconfirmedApply,
  clearUnconfirmedApply,
  findUnconfirmedResult,
  toUnconfirmedApply,
  unconfirmedRejection,
  unconfirmedValues,
  type UnconfirmedApply,
} from './unconfirmed-write.ts';

export { ApplyRejectedError, type ApplyWaiting };

/** An apply that started this long ago without finishing is taken to have died. */
const staleApplyMinutes = 10;

/** Statuses of a preview that can be applied. */
const applicableStatuses = ['ready', 'partially_ready'] as const;

export interface ApplyResult {
  id: string;
  mode: ApplyMode;
  appliedAt: string;
  commitSha: string | null;
  reviewId: number | null;
  /** Paths of the ready files that were applied. */
  files: string[];
  /**
   * Message to the user about how the apply went, such as the suggestions it posted after
   * GitHub rejected its commit of workflow files, or null.
   */
  note: string | null;
  /** True when an earlier call applied the request and this one changed nothing. */
  alreadyApplied: boolean;
}

type StoredRequest = typeof patchRequests.$inferSelect;

/**
 * Builds the message for a preview whose pull request has moved on. Regenerating a file does
 * not help, because it reads the file at the run's head, and a superseded run rejects it.
 */
function movedMessage(patchRequestId: string, detail: string): string {
  return (
    `${detail} Request a new preview on the newest run of the pull request and apply that ` +
    `one instead of patch request ${patchRequestId}.`
  );
}

async function readyFilesOf(context: AppContext, patchRequestId: string) {
  const files = await context.db
    .select()
    .from(patchFiles)
    .where(and(eq(patchFiles.patchRequestId, patchRequestId), eq(patchFiles.status, 'ready')))
    .orderBy(asc(patchFiles.path));
  return files.filter(isApplicableFile);
}

/**
 * Throws ApplyRejectedError with 400 when the version `seen` names a file that patch request
 * `patchRequestId` does not have. Its files are never deleted, so no version that
 * `GET /api/patch-requests/:id` returned for it names such a file, and the client sent the
 * version of another preview or a made-up one.
 */
async function rejectUnknownVersionFiles(
  db: Database,
  patchRequestId: string,
  seen: PreviewVersion,
): Promise<void> {
  const files = await db
    .select({ id: patchFiles.id })
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId));
  const unknown = findUnknownFileIds(seen, files);
  if (unknown.length === 0) return;
  throw new ApplyRejectedError(
    'bad_request',
    `Invalid previewVersion: ${pickForm(unknown.length, 'file', 'files')} ${listShort(unknown)} ` +
      `${pickForm(unknown.length, 'is', 'are')} not part of patch request ${patchRequestId}. Send ` +
      `the previewVersion that GET /api/patch-requests/${patchRequestId} returns.`,
    { fields: ['previewVersion'], unknownFileIds: unknown },
  );
}

/**
 * Throws ApplyRejectedError, naming the files that differ, when the files of patch request
 * `patchRequestId` no longer match the version `seen` that the user saw.
 */
async function checkPreviewVersion(
  db: Database | Transaction,
  patchRequestId: string,
  seen: PreviewVersion,
  logger: Logger,
): Promise<void> {
  const files = await db.select().from(patchFiles).where(eq(patchFiles.patchRequestId, patchRequestId));
  const changes = findPreviewChanges(seen, files);
  if (changes.length === 0) return;
  logger.warn(
    { event: 'apply.preview_changed', changedFiles: changes },
    'apply rejected: the preview changed since the user saw it',
  );
  throw new ApplyRejectedError('conflict', describePreviewChanges(changes), { changedFiles: changes });
}

function isApplicable(status: StoredRequest['status']): boolean {
  return (applicableStatuses as readonly string[]).includes(status);
}

/** Reasons, by status, that a patch request cannot be applied yet or at all. */
const notApplicableReasons: Partial<Record<StoredRequest['status'], string>> = {
  queued: 'is still queued; apply it once its preview is ready',
  running: 'is still running; apply it once its preview is ready',
  failed: 'failed, so it has no file to apply; request a new preview',
  cancelled: 'was cancelled, so it has no file to apply; request a new preview',
};

function notApplicable(patchRequestId: string, status: StoredRequest['status']): ApplyRejectedError {
  const reason = notApplicableReasons[status] ?? `has status ${status}, which cannot be applied`;
  return new ApplyRejectedError('conflict', `Patch request ${patchRequestId} ${reason}.`);
}

/** Formats the time of day of `date` in UTC, such as "12:03:10 UTC". */
function utcTimeOfDay(date: Date): string {
  return `${date.toISOString().slice(11, 19)} UTC`;
}

/** Builds the rejection of an apply for a suspended or uninstalled installation. */
function unavailableRejection(error: InstallationUnavailableError): ApplyRejectedError {
  return new ApplyRejectedError('conflict', error.message, error.details());
}

/**
 * Builds the rejection for a claim that another call holds. The message states when the claim
 * goes stale, because a claim whose call died is taken again only after `staleApplyMinutes`.
 * The claim stores and compares PostgreSQL's now(), so that time follows the database's clock.
 * The message rounds it up to the next whole second, so an apply after it finds the claim stale.
 */
function claimedRejection(patchRequestId: string, applyStartedAt: Date): ApplyRejectedError {
  const staleAt = new Date(applyStartedAt.getTime() + staleApplyMinutes * 60_000);
  const retryAt = new Date(Math.ceil(staleAt.getTime() / 1000) * 1000);
  return new ApplyRejectedError(
    'conflict',
    `Patch request ${patchRequestId} is being applied by another call since ` +
      `${utcTimeOfDay(applyStartedAt)}. If that call died, apply again after ` +
      `${utcTimeOfDay(retryAt)}.`,
    { applyStartedAt: applyStartedAt.toISOString(), claimStaleAt: staleAt.toISOString() },
  );
}

/**
 * Returns the mode and first rate-limited time of the request's apply job `applyJobId` while
 * pg-boss has not finished it (created, retry or active), or null. A request whose
 * `applyError` is set has none, because whatever stored it cancelled or ended the job.
 * `retrying` is true while a failed attempt waits for its retry.
 */
async function findPendingApplyJob(
  context: AppContext,
  request: StoredRequest,
): Promise<{ mode: ApplyMode | undefined; rateLimitedSince: number | undefined; retrying: boolean } | null> {
  if (request.applyJobId === null || request.applyError !== null) return null;
  const [job] = await context.db.execute<{ mode: string | null; since: string | null; state: string }>(sql`
    SELECT data->>'mode' AS mode, data->>'rateLimitedSince' AS since, state FROM pgboss.job
    WHERE name = ${applyQueue} AND id = ${request.applyJobId} AND state < 'completed'`);
  if (!job) return null;
  return {
    mode: applyModes.find((mode) => mode === job.mode),
    rateLimitedSince: job.since === null ? undefined : Number(job.since),
    retrying: job.state === 'retry',
  };
}

/** Returns the response to an apply call while the request's apply job waits with `wait`. */
function waitingResult(id: string, wait: ApplyWait): ApplyWaiting {
  const until = wait.until.toISOString();
  if (wait.reason === 'rate_limit') return { id, status: 'waiting', rateLimitedUntil: until };
  return { id, status: 'waiting', otherApplyWaitUntil: until };
}

function storedResult(request: StoredRequest, files: string[]): ApplyResult {
  return {
    id: request.id,
    mode: request.applyMode!,
    appliedAt: request.appliedAt!.toISOString(),
    commitSha: request.appliedCommitSha,
    reviewId: request.appliedReviewId,
    files,
    note: request.appliedNote,
    alreadyApplied: true,
  };
}

/**
 * Claims the request for one apply and returns the claim's time as `claimedAt`, which
 * releasing the claim compares, the unconfirmed write of an earlier apply, if any, and the
 * `appliedNote` that an earlier apply stored before it posted its review, as `storedNote`. Returns
 * `claimedAt: null` while another apply runs, after one finished, or when the preview is no
 * longer ready (a regeneration started), so two concurrent calls never both write to GitHub. A
 * claim older than `staleApplyMinutes` is taken over, so a call that still runs after that
 * writes at the same time as the one that took its claim.
 * Returns the error and claims nothing when the
 * pull request is closed. A claim with `clearError` also clears the `applyError` of an earlier
 * apply, so pages stop showing it while this apply runs. An apply job claims without it,
 * because a suspend that cancelled the job while it ran may have stored its reason. Every claim
 * clears `applyClosedCheck`, the outcome of a check after a close, because the apply looks for
 * the unconfirmed write again.
 *
 * The check and the claim share a transaction that locks the run's row FOR SHARE, so a close
 * is either committed first and seen here, or it waits until the claim has committed. In the
 * second case the apply reads the pull request from GitHub after the claim and finds it closed.
 * NOTE: a close between that read and the write is not detected, and GitHub accepts a push to
 * the head branch of a closed pull request.
 *
 * With `seenVersion`, the files are compared with it after the claim, in the same transaction,
 * and a mismatch rolls the claim back and throws ApplyRejectedError. A file's result and a
 * regeneration are stored only under the request's row lock and only while no claim exists, so
 * the files cannot change between this check and the end of the apply.
 */
async function claim(
  context: AppContext,
  request: { id: string; runId: string },
  options: { clearError: boolean; seenVersion: PreviewVersion | undefined },
  logger: Logger,
): Promise<{
  claimedAt: string | null;
  closed: PullRequestClosedError | null;
  unconfirmed: UnconfirmedApply | null;
  storedNote: string | null;
}> {
  const { clearError, seenVersion } = options;
  return context.db.transaction(async (tx) => {
    const closed = await findPullRequestClosed(tx, request.runId);
    if (closed) return { claimedAt: null, closed, unconfirmed: null, storedNote: null };
    const claimed = await tx
      .update(patchRequests)
      .set({
        applyStartedAt: sql`now()`,
        applyClosedCheck: null,
        ...(clearError ? { applyError: null } : {}),
      })
      .where(
        and(
          eq(patchRequests.id, request.id),
          isNull(patchRequests.appliedAt),
          inArray(patchRequests.status, [...applicableStatuses]),
          or(
            isNull(patchRequests.applyStartedAt),
            sql`${patchRequests.applyStartedAt}
              < now() - make_interval(mins => ${staleApplyMinutes}::int)`,
          ),
        ),
      )
      // As text, because a JavaScript Date drops the microseconds that tell two claims apart.
      .returning({
        claimedAt: sql<string>`${patchRequests.applyStartedAt}::text`,
        unconfirmedAt: sql<string | null>`${patchRequests.applyUnconfirmedAt}::text`,
        unconfirmedMode: patchRequests.applyUnconfirmedMode,
        unconfirmedCommitSha: patchRequests.applyUnconfirmedCommitSha,
        storedNote: patchRequests.appliedNote,
      });
    const claimedAt = claimed[0]?.claimedAt ?? null;
    if (claimedAt !== null && seenVersion !== undefined) {
      await checkPreviewVersion(tx, request.id, seenVersion, logger);
    }
    return {
      claimedAt,
      closed: null,
      unconfirmed: claimed[0] ? toUnconfirmedApply(claimed[0]) : null,
      storedNote: claimed[0]?.storedNote ?? null,
    };
  });
}

/** Words of an apply commit's message that name its patch request, followed by the run id. */
function commitMarker(patchRequestId: string): string {
  return `by patch request ${patchRequestId} for run`;
}

/**
 * Applies the ready files of a patch request that `userId` owns: as one commit on the head
 * branch (the default for branches of the same repository) or as a review with suggestions
 * (the default for forks, and for previews with GitHub Actions workflow files unless the
 * installation's token has Workflows: write). Returns null when the user owns no such
 * request. Applying again returns the recorded result and writes nothing. With
 * `previewVersion`, an apply whose files no longer match it throws ApplyRejectedError, claims
 * nothing and writes nothing. When GitHub rate-limits the apply, it queues an apply job for
 * when the limit lifts and returns `ApplyWaiting`. `job` is that apply job when it runs.
 */
export async function applyPatchRequest(
  context: AppContext,
  input: {
    patchRequestId: string;
    userId: string;
    mode?: ApplyMode;
    /** The version of the preview that the user saw; without it the apply writes the files as they are. */
    previewVersion?: PreviewVersion;
    job?: { id: string; data: ApplyJobData };
  },
  logger: Logger,
): Promise<ApplyResult | ApplyWaiting | null> {
  const request = await context.db.query.patchRequests.findFirst({
    where: and(eq(patchRequests.id, input.patchRequestId), eq(patchRequests.userId, input.userId)),
    with: { run: true },
  });
  if (!request) return null;
  // Checked first, like a malformed version, because no state of the preview makes it valid.
  if (input.previewVersion !== undefined) {
    await rejectUnknownVersionFiles(context.db, request.id, input.previewVersion);
  }
  let files = await readyFilesOf(context, request.id);
  let paths = files.map((file) => file.path);

  if (request.appliedAt) {
    // An apply job that waited while a call in another mode applied the request has nothing
    // left to do, and a rejection would show as the applied preview's error.
    if (input.mode && input.mode !== request.applyMode && !input.job) {
      throw new ApplyRejectedError(
        'conflict',
        `Patch request ${request.id} was already applied as ${request.applyMode}, so it ` +
          `cannot be applied again as ${input.mode}.`,
      );
    }
    return storedResult(request, paths);
  }
  // Checked before the request's status, because closing cancels unfinished previews and the
  // user must reopen the pull request before requesting a new one.
  const closed = pullRequestClosedError(request.run);
  if (closed) throw closedRejection(closed);
  if (!isApplicable(request.status)) throw notApplicable(request.id, request.status);
  // Checked here too, before the claim, so a press on a page that is out of date gets the
  // changed files even while an apply job waits. The claim checks again under its lock.
  if (input.previewVersion !== undefined) {
    await checkPreviewVersion(context.db, request.id, input.previewVersion, logger);
  }
  if (files.length === 0) {
    throw new ApplyRejectedError(
      'conflict',
      `Patch request ${request.id} has no ready file to apply.`,
    );
  }
  const { run } = request;
  const sameRepository = run.headRepository.toLowerCase() === run.repository.toLowerCase();
  // GitHub rejects the app's commits to workflow files without Workflows: write (see
  // workflowFilesOf). Without it a preview with one is applied as suggestions by default, and
  // a request for a commit is rejected here, so that a pending apply job stays as it is.
  const workflowFiles = workflowFilesOf(paths);
  const workflowsPermission =
    workflowFiles.length > 0
      ? await readWorkflowsPermissionBeforeClaim(context, run.installationId, logger)
      : undefined;
  const workflowsUnwritable = workflowsPermission !== undefined && workflowsPermission !== 'write';
  if (input.mode === 'commit' && workflowFiles.length > 0 && workflowsUnwritable) {
    throw workflowFilesRejection(workflowFiles, workflowsPermission);
  }
  // A permission that could not be read counts as missing until the read under the claim.
  const workflowsBlocked = workflowFiles.length > 0 && workflowsPermission !== 'write';
  let requestedMode = input.mode ?? (workflowsBlocked ? 'suggestions' : undefined);
  // The stored head decides until GitHub's current pull request is read after the claim.
  const defaultMode: ApplyMode = sameRepository && !workflowsBlocked ? 'commit' : 'suggestions';
  let mode = input.mode ?? defaultMode;

  // An API call while an apply job of the request is pending continues that job's apply. While
  // the job waits for a rate limit or for another apply's claim, a call without a mode or in the
  // job's mode returns that wait, so a press neither queues a second job nor restarts the
  // maximum wait. A call in another mode goes on and replaces the job: it keeps the job's first
  // rate-limited time, and cancels the job when it fails. A call while the job runs goes on too.
  const pending = input.job ? null : await findPendingApplyJob(context, request);
  const replacesPendingJob =
    pending !== null && input.mode !== undefined && input.mode !== (pending.mode ?? defaultMode);
  // A wait stored next to a retry ended with the failed attempt (see visibleApplyWait).
  const wait = pending?.retrying ? null : currentApplyWait(request);
  if (pending && wait && !replacesPendingJob) {
    logger.info(
      { event: 'apply.waiting', applyJobId: request.applyJobId, reason: wait.reason, until: wait.until.toISOString() },
      'an apply job of the patch request waits, so nothing is queued',
    );
    return waitingResult(request.id, wait);
  }

  if (mode === 'commit' && run.headRepository === '') throw deletedHeadRejection();
  if (mode === 'commit' && !sameRepository) throw forkRejection(run.headRepository);
  // A call that died may have pushed its commit, which supersedes the run through its
  // `synchronize` event, or posted its review before someone pushed. While that call's claim
  // remains, the apply goes on, so that it can find the commit or review and record it. So does
  // an apply job, and any apply while one is unfinished, because the call that GitHub
  // rate-limited, or a failed attempt of the job, may have written before it failed.
  const claimLeft = input.job !== undefined || (await hasUnrecordedApply(context.db, request));
  if (run.status === 'superseded' && !claimLeft) {
    throw new ApplyRejectedError(
      'conflict',
      movedMessage(request.id, `The pull request has a newer commit than ${run.headSha}.`),
    );
  }
  // Checked before the claim and before any GitHub call, so the request stays unclaimed. A
  // suspend or uninstall after this check surfaces as an error from GitHub in the try below.
  const unavailable = await findInstallationUnavailable(context.db, run.installationId);
  if (unavailable) throw unavailableRejection(unavailable);
  const github = requireGitHubApp(context);

  const claimOutcome = await claim(
    context,
    request,
    { clearError: input.job === undefined, seenVersion: input.previewVersion },
    logger,
  );
  if (claimOutcome.closed) throw closedRejection(claimOutcome.closed);
  const { claimedAt, unconfirmed, storedNote } = claimOutcome;
  if (claimedAt === null) {
    const current = await context.db.query.patchRequests.findFirst({
      where: eq(patchRequests.id, request.id),
    });
    if (!current) return null;
    if (current.appliedAt) return storedResult(current, paths);
    if (!isApplicable(current.status)) throw notApplicable(request.id, current.status);
    if (current.applyStartedAt) throw claimedRejection(request.id, current.applyStartedAt);
    // The other call released its claim between the claim attempt and this read.
    throw new ApplyRejectedError(
      'conflict',
      `Patch request ${request.id} was being applied by another call, which ended without ` +
        'applying it. Apply again.',
    );
  }
  const [owner, repo] = splitRepository(run.repository);
  const recovering = claimLeft || unconfirmed !== null;
  let outcome: { commitSha: string | null; reviewId: number | null };
  let note: string | null = null;
  try {
    // Read again under the claim, because a regeneration that started and finished after the
    // first read changed the files. The claim keeps later regenerations and late results of an
    // overlapping preview attempt out until the apply ends, so these are the files that the
    // claim compared with `previewVersion`.
    files = await readyFilesOf(context, request.id);
    paths = files.map((file) => file.path);
    // Workflow files are checked again here, before any write, because one may have become
    // ready after the first read, and the permission may have changed or been unreadable. The
    // permission is read from the token that the writes below send.
    const claimedWorkflowFiles = workflowFilesOf(paths);
    if (claimedWorkflowFiles.length > 0) {
      const permission = await readWorkflowsPermission(context.db, github, run.installationId);
      if (permission === 'write') {
        requestedMode = input.mode;
        mode = input.mode ?? (sameRepository ? 'commit' : 'suggestions');
      } else {
        if (input.mode === 'commit') throw workflowFilesRejection(claimedWorkflowFiles, permission);
        requestedMode = 'suggestions';
        mode = 'suggestions';
      }
    }
    const octokit = await github.installationOctokit(run.installationId);
    const reviewTarget = {
      owner,
      repo,
      pullNumber: run.prNumber,
      headSha: run.headSha,
      patchRequestId: request.id,
      app: github,
    };
    // The write of an earlier apply that GitHub did not confirm is looked for first, and
    // recorded when found, whatever the pull request's state and the requested mode. A failed
    // read keeps it stored and raises UnconfirmedWriteError.
    let { reviewId: leftReviewId, commitSha: leftCommitSha } = unconfirmed
      ? await findUnconfirmedResult(octokit, unconfirmed, { branch: run.headRef, review: reviewTarget })
      : { reviewId: null, commitSha: null };
    if (unconfirmed && leftReviewId === null && leftCommitSha === null) {
      await clearUnconfirmedApply(context.db, request.id, claimedAt, unconfirmed);
      logger.info(
        {
          event: 'apply.unconfirmed_not_found',
          unconfirmedMode: unconfirmed.mode,
          commitSha: unconfirmed.commitSha,
        },
        'the unconfirmed write of an earlier apply did not take effect',
      );
    }
    if (leftReviewId !== null || leftCommitSha !== null) {
      mode = leftReviewId !== null ? 'suggestions' : 'commit';
    } else {
      // The stored run can be out of date: a close, merge or deleted fork after the last
      // webhook, or a run stored with the base repository as its head after its fork was deleted.
      const pullRequest = parseGitHubResponse(
        pullRequestStateSchema,
        'GET',
        await octokit.rest.pulls.get({ owner, repo, pull_number: run.prNumber }),
      );
      try {
        mode = checkPullRequest(pullRequest, run, requestedMode);
      } catch (error) {
        // BranchMovedError means a head that moved on. The head may be the commit of a call that
        // died, or have moved past its review. In mode commit that commit is looked for without a
        // claim too, because a call whose ref update got no response may have pushed it and then
        // released its claim.
        if (error instanceof BranchMovedError && (recovering || mode === 'commit')) {
          if (recovering) leftReviewId = await findPostedReview(octokit, reviewTarget);
          if (leftReviewId === null) {
            leftCommitSha = await findPushedCommit(octokit, {
              owner,
              repo,
              commitSha: pullRequest.head.sha,
              parentSha: run.headSha,
              marker: commitMarker(request.id),
              app: github,
            });
          }
        }
        if (leftReviewId === null && leftCommitSha === null) throw error;
        mode = leftReviewId !== null ? 'suggestions' : 'commit';
      }
    }
    // A call that died may have posted its review before this call asked for a commit, and
    // committing as well would apply the same fixes twice.
    if (mode === 'commit' && recovering && leftCommitSha === null) {
      leftReviewId = await findPostedReview(octokit, reviewTarget);
      if (leftReviewId !== null) mode = 'suggestions';
    }
    if (leftReviewId !== null) {
      outcome = { commitSha: null, reviewId: leftReviewId };
      logger.info(
        { event: 'apply.review_recovered', reviewId: leftReviewId },
        'found the review of an earlier call',
      );
    } else if (leftCommitSha !== null) {
      outcome = { commitSha: leftCommitSha, reviewId: null };
      logger.info(
        { event: 'apply.commit_recovered', commitSha: leftCommitSha },
        'found the commit of an earlier call on the head branch',
      );
    } else {
      let committed: { commitSha: string; recovered: boolean } | null = null;
      if (mode === 'commit') {
        try {
          committed = await commitFiles(
            octokit,
            {
              owner,
              repo,
              branch: run.headRef,
              parentSha: run.headSha,
              message:
                `Apply Fixwright fixes to ${files.length} ${files.length === 1 ? 'file' : 'files'}\n\n` +
                `Fixes previewed ${commitMarker(request.id)} ${run.id} at ${run.headSha}.`,
            },
            files.map((file) => ({ path: file.path, content: file.proposedText! })),
          );
        } catch (error) {
          // The token claimed Workflows: write, but GitHub no longer grants it. Nothing was
          // committed, so the apply posts suggestions unless mode commit was requested.
          if (!(error instanceof WorkflowsRejectedError)) throw error;
          note = await handleWorkflowsRejection(
            context.db,
            error,
            {
              patchRequestId: request.id,
              claimedAt,
              installationId: run.installationId,
              requestedMode: input.mode,
              files: paths,
            },
            logger,
          );
          mode = 'suggestions';
        }
      }
      if (committed) {
        outcome = { commitSha: committed.commitSha, reviewId: null };
        logger.info(
          {
            event: 'apply.committed',
            commitSha: committed.commitSha,
            recovered: committed.recovered,
            files: paths.length,
          },
          'fixes committed to the head branch',
        );
      } else {
        const review = await postSuggestionReview(
          octokit,
          reviewTarget,
          files.map((file) => ({
            path: file.path,
            originalText: file.originalText!,
            proposedText: file.proposedText!,
          })),
        );
        outcome = { commitSha: null, reviewId: review.reviewId };
        logger.info(
          {
            event: 'apply.reviewed',
            reviewId: review.reviewId,
            comments: review.comments,
            outsideDiffFiles: review.outsideDiffFiles,
          },
          'fixes posted as review suggestions',
        );
      }
    }
  } catch (error) {
    // A call that replaces the pending job cancels it when it fails. Otherwise releasing the
    // claim starts a job that waits for it. A write of this apply that GitHub may have carried
    // out is stored in the same update, so no later apply takes the release for one that wrote
    // nothing.
    const values = error instanceof UnconfirmedWriteError ? unconfirmedValues(error) : {};
    // A rate limit or an unavailable installation on the read that checks a write ends the
    // apply as on any other request, while `values` keeps that write stored as unconfirmed.
    const cause = applyFailureCause(error);
    if (cause !== error && error instanceof UnconfirmedWriteError) logUnconfirmedWrite(logger, error);
    const endClaim = (failure: unknown) =>
      releaseApplyClaim(
        context,
        { patchRequestId: request.id, claimedAt },
        replacesPendingJob
          ? {
              values,
              cancelPendingJob: (pendingJob) =>
                `The apply as ${mode} replaced ${pendingJob}, and failed: ${safeErrorMessage(failure)}`,
            }
          : { values },
        logger,
      );
    const rateLimit = asInstallationUnavailable(cause) ? null : asGitHubRateLimit(cause);
    if (rateLimit) {
      // The claim is released after the next job is queued, which replaces the pending job, so
      // that job is not started for nothing.
      let waiting: ApplyWaiting;
      try {
        waiting = await queueApplyAfterRateLimit(
          context,
          {
            patchRequestId: request.id,
            userId: input.userId,
            mode: input.mode,
            previewVersion: input.previewVersion,
            job: input.job,
            rateLimitedSince: pending?.rateLimitedSince,
          },
          rateLimit,
          error,
          logger,
        );
      } catch (queueError) {
        await endClaim(queueError);
        throw queueError;
      }
      await releaseApplyClaim(context, { patchRequestId: request.id, claimedAt }, { values }, logger);
      return waiting;
    }
    let failure: unknown = error;
    try {
      failure = await toApplyFailure(context, cause, { request, mode }, logger);
    } finally {
      await endClaim(failure);
    }
    throw failure;
  }

  // When GitHub rejected an earlier call's commit of workflow files, that call stored its note
  // before it posted the fallback review, and may have died after the post. The note belongs
  // with that review, which this call found or posted, and not with a commit.
  if (note === null && outcome.reviewId !== null && recovering) note = storedNote;
  const appliedAt = new Date();
  // A job that waits for this claim starts now and ends without writing.
  const values = {
    applyMode: mode,
    appliedAt,
    appliedCommitSha: outcome.commitSha,
    appliedReviewId: outcome.reviewId,
    appliedNote: note,
    ...clearedApplyWait,
    ...clearedUnconfirmedApply,
    applyError: null,
  };
  await releaseApplyClaim(context, { patchRequestId: request.id, claimedAt }, { values }, logger);
  return {
    id: request.id,
    mode,
    appliedAt: appliedAt.toISOString(),
    ...outcome,
    files: paths,
    note,
    alreadyApplied: false,
  };
}

/**
 * Converts an error that ended an apply after its claim into the error to throw, and logs it.
 * Known failures become ApplyRejectedError, and an installation that GitHub reports suspended
 * or uninstalled is recorded as such. Other errors are returned as they are. A rate limit does
 * not get here, because it queues an apply job instead.
 */
async function toApplyFailure(
  context: AppContext,
  error: unknown,
  apply: { request: StoredRequest & { run: typeof prRuns.$inferSelect }; mode: ApplyMode },
  logger: Logger,
): Promise<unknown> {
  const { request, mode } = apply;
  const { run } = request;

  if (error instanceof ApplyRejectedError) {
    logger.warn({ event: error.event, error: error.message }, 'apply rejected');
    return error;
  }
  if (error instanceof BranchMovedError) {
    logger.warn({ event: 'apply.branch_moved', error: error.message }, 'apply rejected');
    // The message sends the user to the newest run, which the missed push may not have yet.
    await recordMovedHead(context, run, logger);
    return new ApplyRejectedError('conflict', movedMessage(request.id, error.message));
  }
  if (error instanceof PreviewOutdatedError) {
    logger.warn({ event: 'apply.preview_outdated', error: error.message }, 'apply rejected');
    return new ApplyRejectedError('conflict', error.message);
  }
  if (error instanceof UnconfirmedWriteError) {
    logUnconfirmedWrite(logger, error);
    return unconfirmedRejection(error, request.id);
  }
  if (error instanceof SuggestionDiffError) {
    logger.warn({ event: 'apply.diff_failed', error: error.message }, 'apply failed');
    return new ApplyRejectedError('service_unavailable', error.message);
  }

  const unavailable = asInstallationUnavailable(error);
  if (unavailable) {
    const recorded = await recordInstallationUnavailable(context.db, unavailable);
    logger.warn(
      { event: 'apply.installation_unavailable', reason: unavailable.reason },
      'apply rejected',
    );
    return unavailableRejection(recorded);
  }

  // NOTE: Octokit reuses an installation token for up to 59 minutes. Whether GitHub extends a
  // token issued before an owner accepted new permissions is unverified, so a retry soon
  // after granting Contents: write may be rejected again until the token is renewed.
  const rejection = asGitHubRejection(error);
  if (rejection) {
    logger.warn(
      { event: 'apply.github_rejected', mode, github: rejection },
      'apply rejected by GitHub',
    );
    const message = describeGitHubRejection(rejection, {
      patchRequestId: request.id,
      repository: run.repository,
      headSha: run.headSha,
      mode,
    });
    return new ApplyRejectedError('bad_gateway', message, { github: rejection });
  }
  return error;
}

/** Logs that GitHub may have carried out the write of `error`, which stays stored as unconfirmed. */
function logUnconfirmedWrite(logger: Logger, error: UnconfirmedWriteError): void {
  logger.warn(
    {
      event: 'apply.unconfirmed',
      mode: error.mode,
      commitSha: error.commitSha,
      github: asGitHubRejection(error.writeError),
      confirmingRead: asGitHubRejection(error.readError),
    },
    'GitHub may have carried out the write, and the read that checks it failed',
  );
}
