import type { Octokit } from '@octokit/rest';
import { and, eq, inArray, isNull, or, sql } from 'drizzle-orm';
import { analyzeChangedFilesInTurns, type AnalysisResult } from '../analysis/analyze.ts';
import { excerptMaskVersion } from '../analysis/mask-version.ts';
import { asGitHubRejection } from '../apply/github-rejection.ts';
import type { AppContext } from '../context.ts';
import type { Database } from '../db/client.ts';
import { safeErrorMessage, toSafeError } from '../errors/safe-error.ts';
import { findings, prRuns } from '../db/schema/index.ts';
import {
  describeInvalidResponse,
  failingProxyHint,
  parseGitHubResponse,
  UnexpectedGitHubAnswerError,
} from '../github/github-response.ts';
import { requireActiveInstallation } from '../github/installation-unavailable.ts';
import { readFileSizes } from '../github/file-sizes.ts';
import { listPullRequestFiles, type PullRequestFile } from '../github/pull-files.ts';
import { pullRequestResponse } from '../github/pull-request-response.ts';
import { GitHubResponseTooLargeError } from '../github/responses.ts';
import { appCredentialHint, isAppCredentialRejection } from '../github/token-request.ts';
import { splitRepository } from '../github/repository-name.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { transactionDb } from '../jobs/boss.ts';
import { queuePullRequestConfirmation } from '../jobs/confirm-pull-request-queue.ts';
import { reportQueue, type ReportJobData } from '../jobs/report.ts';
import type { Logger } from '../logger.ts';
import {
  AnalysisStopped,
  isCurrentJob,
  readStopReason,
  runStopCheckpoint,
  stopReasonOf,
} from './analysis-stop.ts';
import { setAsideUnusableNames } from './file-names.ts';
import { fillMissingPatches, type CompletedFiles } from './missing-patches.ts';

/**
 * Findings per INSERT statement. Each row binds 11 parameters, and postgres.js 3.4 rejects a
 * statement with 65,534 or more (MAX_PARAMETERS_EXCEEDED), so one statement fits 5,957 rows.
 * Drizzle and postgres.js build each statement on the event loop, so its size bounds the
 * delay: storing 10,000 findings delayed the event loop by up to about 150 ms with 1,000 rows a
 * statement and 46 to 69 ms with 250, in the same total time (bench/store-findings.ts).
 */
export const findingInsertChunkSize = 250;

const { head, base } = pullRequestResponse.shape;

/**
 * The fields of GitHub's `pulls.get` response that the analysis reads (see
 * pullRequestResponse). An invalid response raises UnexpectedGitHubAnswerError, which fails the
 * analyze job like a server error does, so the job tries again.
 */
const analyzedPullRequestSchema = pullRequestResponse.pick({ changed_files: true }).extend({
  head: head.pick({ sha: true }),
  base: base.pick({ ref: true, sha: true }),
});

export interface AnalyzeOutcome {
  status: 'completed' | 'skipped';
  findings: number;
  files: number;
}

/**
 * Builds the error of a run superseded because the pull request's head on GitHub is another
 * commit. That commit can be older than the run's, after a force-push back to an ancestor.
 */
export function describeMovedHead(runHeadSha: string, currentHeadSha: string): string {
  const current = currentHeadSha.slice(0, 7);
  return (
    `The pull request's head on GitHub is now ${current}, not this run's ${runHeadSha.slice(0, 7)}, ` +
    `so this run stopped before its analysis. A run for ${current} reports instead. That run ` +
    `comes from the pull request's synchronize event for ${current} or, when that event is ` +
    'lost, from the check of the pull request with GitHub that was queued when this run stopped.'
  );
}

/**
 * Reads the files a pull request changes at the run's head commit, runs the built-in rules
 * over the added lines and stores the findings with the base branch they were compared with.
 * Running it again replaces the findings. A run that completes queues its report job in the
 * same transaction, and cancels the report job of the run's earlier analysis. `jobId` is the
 * analyze job that runs it. Once the run is cancelled, superseded or completed by another
 * attempt of the job, or names another analyze job because a base change queued it again, this
 * one stops and stores nothing. It checks when it marks the run `analyzing`, and in the
 * transaction that stores the findings. Between the two it checks at most once a second (see
 * `runStopCheckpoint`). The checks come between the pages of the file list, around the merge
 * base request, before each file read, while a diff waits for its thread and between rule steps.
 */
export async function analyzeRun(
  context: AppContext,
  runId: string,
  logger: Logger,
  jobId?: string,
): Promise<AnalyzeOutcome> {
  const run = await context.db.query.prRuns.findFirst({ where: eq(prRuns.id, runId) });
  if (!run) {
    logger.warn({ event: 'analyze.run_missing' }, 'run no longer exists; nothing to analyze');
    return { status: 'skipped', findings: 0, files: 0 };
  }
  if (run.status === 'superseded' || run.status === 'completed' || run.status === 'cancelled') {
    return { status: 'skipped', findings: 0, files: 0 };
  }
  if (!isCurrentJob(run, jobId)) {
    logger.info(
      { event: 'analyze.job_replaced', currentJobId: run.analyzeJobId },
      'the run was queued again with another analyze job; nothing to analyze',
    );
    return { status: 'skipped', findings: 0, files: 0 };
  }
  const github = requireGitHubApp(context);
  await requireActiveInstallation(context.db, run.installationId);

  // The run may have changed since the read above. A run that a base change queued again
  // stays queued for its new job, instead of showing `analyzing` while that job waits.
  const [marked] = await context.db
    .update(prRuns)
    .set({ status: 'analyzing' })
    .where(
      and(
        eq(prRuns.id, runId),
        inArray(prRuns.status, ['queued', 'analyzing', 'failed']),
        // As isCurrentJob: the run names this job or no job.
        jobId === undefined
          ? undefined
          : or(isNull(prRuns.analyzeJobId), eq(prRuns.analyzeJobId, jobId)),
      ),
    )
    .returning({ id: prRuns.id });
  if (!marked) {
    const reason = await readStopReason(context.db, runId, jobId);
    if (reason !== null) return logStopped(logger, reason);
  }

  const [owner, repo] = splitRepository(run.repository);
  const octokit = await github.installationOctokit(run.installationId);
  // GitHub lists the files of the pull request's current head. A run whose commit is no longer
  // the head would get another commit's findings, so it stops and the run of the head reports.
  const pullRequest = parseGitHubResponse(
    analyzedPullRequestSchema,
    'GET',
    await octokit.rest.pulls.get({ owner, repo, pull_number: run.prNumber }),
  );
  if (pullRequest.head.sha !== run.headSha) {
    // The push's `synchronize` event may never arrive (lost, or sent while Fixwright was down),
    // so the same transaction queues a check of the pull request. The check reads GitHub again
    // and queues the run of the head commit when that commit has no run, or only a superseded one.
    const checkJobId = await context.db.transaction(async (tx) => {
      await tx
        .update(prRuns)
        .set({
          status: 'superseded',
          error: describeMovedHead(run.headSha, pullRequest.head.sha),
        })
        .where(sql`${prRuns.id} = ${runId} AND ${prRuns.status} <> 'cancelled'`);
      return queuePullRequestConfirmation(tx, context.boss, {
        installationId: run.installationId,
        repositoryId: run.repositoryId,
        repository: run.repository,
        prNumber: run.prNumber,
      });
    });
    logger.info(
      {
        event: 'analyze.head_moved',
        headSha: run.headSha,
        currentHeadSha: pullRequest.head.sha,
        checkJobId,
      },
      'pull request head moved; run superseded and a check of the pull request queued',
    );
    return { status: 'skipped', findings: 0, files: 0 };
  }
  // GitHub diffs a pull request's files from the merge base of its base branch and head. The
  // branch name is passed, not `base.sha`, which GitHub does not always move with the branch.
  // NOTE: that GitHub lists the files against the branch's current tip is unverified, so a local
  // diff that adds more lines than GitHub counts leaves its file unchecked.
  const target = { owner, repo, baseRef: pullRequest.base.ref, headSha: run.headSha };
  // One checkpoint serves the file list's pages, the file reads, the merge base request, the
  // diffs and the rules, so the run is read at most once a second across all of them.
  const checkpoint = runStopCheckpoint(context.db, { runId, jobId }, logger);
  let files: PullRequestFile[];
  let completedFiles: CompletedFiles;
  let analysis: AnalysisResult;
  try {
    files = await listPullRequestFiles(
      octokit,
      { owner, repo, pullNumber: run.prNumber },
      { checkpoint },
    );
    const { usable, unusable } = setAsideUnusableNames(files, logger);
    completedFiles = await fillMissingPatches(octokit, target, usable, logger, { checkpoint });
    completedFiles.uncheckedPaths.push(...unusable.map((file) => file.path));
    completedFiles.uncheckedReasons.push(...unusable);
    analysis = await analyzeChangedFilesInTurns(completedFiles.files, { checkpoint });
    // Reading the file sizes takes up to `maxSizeTreeReads` (50) git tree requests.
    await checkpoint();
  } catch (error) {
    if (error instanceof AnalysisStopped) return logStopped(logger, error.reason);
    throw error;
  }
  const { uncheckedPaths, uncheckedReasons } = completedFiles;
  const { findings: drafts, omittedFindings } = analysis;
  const fileSizes = await readFindingFileSizes(octokit, { owner, repo, ref: run.headSha }, drafts, logger);
  // GitHub lists at most 3,000 files, but `changed_files` counts all of them.
  const unlistedFiles = Math.max(0, pullRequest.changed_files - files.length);

  const stopReason = await context.db.transaction(async (tx) => {
    // Locks the run's row first, so the report job of an earlier analysis read here is the one
    // this transaction replaces. A rate-limited report job that queues its successor locks the
    // row too, so it either comes first and its successor is cancelled below, or it waits and
    // then finds that the run names the new job.
    const [previous] = await tx
      .select({
        status: prRuns.status,
        error: prRuns.error,
        reportJobId: prRuns.reportJobId,
        analyzeJobId: prRuns.analyzeJobId,
      })
      .from(prRuns)
      .where(eq(prRuns.id, runId))
      .for('update');
    // The run was cancelled or superseded after the last check, or a base change queued it
    // again with a new job that compares against the new base.
    const reason = stopReasonOf(previous, jobId);
    if (reason !== null || !previous) return reason;
    await tx.delete(findings).where(eq(findings.runId, runId));
    for (let start = 0; start < drafts.length; start += findingInsertChunkSize) {
      const chunk = drafts.slice(start, start + findingInsertChunkSize);
      await tx
        .insert(findings)
        .values(
          chunk.map((draft) => ({
            ...draft,
            runId,
            source: 'builtin' as const,
            maskVersion: excerptMaskVersion,
            fileBytes: fileSizes.get(draft.path) ?? null,
          })),
        )
        .onConflictDoNothing();
    }
    // The new findings are not posted yet, so the report time and error of an earlier analysis
    // are cleared. A suspend then cancels the new report job as a pending one.
    const [completed] = await tx
      .update(prRuns)
      .set({
        status: 'completed',
        error: null,
        completedAt: new Date(),
        reportedAt: null,
        reportError: null,
        // The check run of an earlier analysis keeps its annotations, so the report creates a
        // new one (see checkRunExternalId).
        checkRunId: null,
        checkRunAnnotations: 0,
        // A report job that waits for a rate limit is cancelled below, and the wait with it.
        rateLimitedUntil: null,
        rateLimitedJobId: null,
        rateLimitedQueue: null,
        uncheckedFiles: uncheckedPaths,
        uncheckedFileReasons: uncheckedReasons,
        unlistedFiles,
        omittedFindings,
        // GitHub listed the files against the base read above. A base change after the run was
        // queued may have moved it, so the run records that base.
        baseSha: pullRequest.base.sha,
        baseRef: pullRequest.base.ref,
      })
      .where(sql`${prRuns.id} = ${runId} AND ${prRuns.status} NOT IN ('superseded', 'cancelled')`)
      .returning({ id: prRuns.id });
    if (completed) {
      const db = transactionDb(tx);
      const data: ReportJobData = { runId };
      const reportJobId = await context.boss.send(reportQueue, data, { db });
      await tx.update(prRuns).set({ reportJobId }).where(eq(prRuns.id, runId));
      // The earlier analysis's report job would post the findings again, or post them after a
      // rate limit lifts, so at most one report job of the run stays pending. pg-boss 10.4
      // cancels a job in any state before `completed`. A worker that is running the job goes
      // on, but the job is neither retried nor followed by a job after a rate limit, and it
      // does not mark the run reported (see reportRun).
      if (previous.reportJobId) await context.boss.cancel(reportQueue, previous.reportJobId, { db });
    }
    return null;
  });
  if (stopReason !== null) return logStopped(logger, stopReason);
  return { status: 'completed', findings: drafts.length, files: files.length };
}

/** Logs why an analysis stopped without storing findings, and returns its outcome. */
function logStopped(logger: Logger, reason: string): AnalyzeOutcome {
  logger.info({ event: 'analyze.stopped', reason }, `analysis stopped, nothing stored: ${reason}`);
  return { status: 'skipped', findings: 0, files: 0 };
}

/**
 * Reads the sizes of the files with findings, which the run page needs to estimate a preview.
 * A failed request leaves the sizes out and the analysis goes on, so the page falls back to
 * estimates without the file content.
 */
async function readFindingFileSizes(
  octokit: Octokit,
  target: { owner: string; repo: string; ref: string },
  drafts: readonly { path: string }[],
  logger: Logger,
): Promise<Map<string, number>> {
  if (drafts.length === 0) return new Map();
  const paths = new Set(drafts.map((draft) => draft.path));
  try {
    const { sizes, limited } = await readFileSizes(octokit, target, paths);
    if (sizes.size < paths.size) {
      logger.info(
        { event: 'analyze.file_sizes_missing', missing: paths.size - sizes.size, limited },
        'some files with findings have no size; their previews are estimated without content',
      );
    }
    return sizes;
  } catch (error) {
    if (typeof (error as { status?: unknown }).status !== 'number') throw error;
    logger.warn(
      { event: 'analyze.file_sizes_failed', err: toSafeError(error) },
      'reading the git tree failed; previews of this run are estimated without file content',
    );
    return new Map();
  }
}

/**
 * Marks a run failed after the last retry of its analyze job `jobId`. A run that a new delivery
 * queued again since belongs to a newer job, so it is left as it is, and so is a run that the
 * job completed before a later error (its findings stand). The stored message is the
 * safe form of the error, because the run page shows it and a failed query's own message quotes
 * the file text.
 */
export async function failRun(
  db: Database,
  target: { runId: string; jobId: string },
  error: unknown,
): Promise<void> {
  await db
    .update(prRuns)
    .set({
      status: 'failed',
      error: `Analysis failed: ${describeAnalysisError(error)}`,
      completedAt: new Date(),
    })
    .where(
      sql`${prRuns.id} = ${target.runId}
        AND ${prRuns.status} NOT IN ('completed', 'superseded', 'cancelled')
        AND (${prRuns.analyzeJobId} IS NULL OR ${prRuns.analyzeJobId} = ${target.jobId})`,
    );
}

/**
 * Stores the error of failed attempt `attempt` (from 1) of `attempts` on the run while its
 * analyze job `jobId` waits for pg-boss's retry, so that the run's page and API show why it stays
 * `analyzing`. The next attempt keeps it until the run completes, which clears it, or fails,
 * which replaces it. A run that no longer names the job is left as it is, as failRun does.
 */
export async function recordFailedAttempt(
  db: Database,
  target: { runId: string; jobId: string },
  error: unknown,
  attempts: { attempt: number; attempts: number },
): Promise<void> {
  const message =
    `Attempt ${attempts.attempt} of ${attempts.attempts} failed, so the analysis is retried: ` +
    describeAnalysisError(error);
  await db
    .update(prRuns)
    .set({ error: message })
    .where(
      sql`${prRuns.id} = ${target.runId}
        AND ${prRuns.status} IN ('queued', 'analyzing')
        AND (${prRuns.analyzeJobId} IS NULL OR ${prRuns.analyzeJobId} = ${target.jobId})`,
    );
}

/**
 * Describes why an analysis failed. A GitHub response names the request, status and GitHub's
 * message, because Octokit's own message ("Not Found - https://docs.github.com/rest") names
 * neither the pull request nor the next step. An invalid 2xx response names each invalid field.
 */
function describeAnalysisError(error: unknown): string {
  const rejection = asGitHubRejection(error);
  if (!rejection) return safeErrorMessage(error);
  const request = `${rejection.method} ${rejection.path}`;
  let text: string;
  if (error instanceof UnexpectedGitHubAnswerError) {
    text = describeInvalidResponse(error);
    // A response over the size limit would be as large the next time.
    if (!(error instanceof GitHubResponseTooLargeError)) {
      text += ` ${failingProxyHint} Once it responds normally, push a commit or redeliver the event.`;
    }
  } else if (rejection.noResponse) {
    text = `GitHub sent no response to ${request}: ${rejection.message}`;
  } else {
    text = `GitHub returned ${rejection.status} for ${request}: ${rejection.message}.`;
  }
  if (rejection.status === 404) {
    text +=
      " GitHub returns 404 when the repository or pull request does not exist or the app's " +
      'installation cannot read it. Check the repositories that the installation can access, ' +
      'then push a commit or redeliver the event.';
  }
  if (isAppCredentialRejection(error)) text += ` ${appCredentialHint}`;
  return safeErrorMessage(new Error(text));
}
