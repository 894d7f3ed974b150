import type { Octokit } from '@octokit/rest';
import { and, desc, eq, inArray, isNull, sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import { installations, prRuns } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import {
  readInstallationRepositories,
  readOpenPullRequests,
  type InstallationRepository,
  type OpenPullRequest,
} from '../github/open-pull-requests.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import type { Logger } from '../logger.ts';
import { queuePullRequestConfirmation } from './confirm-pull-request-queue.ts';
import { deferCheck, findLaterCheck, findRunningCheck } from './keyed-checks.ts';
import { rateLimitFields } from './rate-limit-wait.ts';
import {
  initialResumeProgress,
  queueInstallationResume,
  resumeDelaySeconds,
  resumeInstallationJobData,
  resumeInstallationQueue,
  type ResumeCounts,
  type ResumeInstallationJobData,
  type ResumeProgress,
} from './resume-installation-queue.ts';

/** Pull requests queued in one transaction, one page of a listing at most. */
const batchSize = 100;

/**
 * GitHub pages that one job reads before a new job continues the resume, so that a job of an
 * installation with many repositories ends well within the queue's 15-minute time limit.
 * NOTE: the value is a judgment: about 1 s a page, and Octokit's waits for rate limits of up
 * to 60 s, fit many times.
 */
export const pagesPerResumeJob = 50;

/**
 * Pages of GET /installation/repositories that a resume reads at most: 10,000 repositories.
 * NOTE: a limit against a listing that never ends, such as a proxy that repeats a page, not a
 * GitHub limit. The open pull requests of further repositories are analyzed after their next
 * event.
 */
export const maxRepositoryPages = 100;

/**
 * Pages of open pull requests that a resume reads at most per repository: 3,000 pull requests.
 * NOTE: a limit as maxRepositoryPages is, not a GitHub limit.
 */
export const maxPullRequestPages = 30;

/** Seconds after which a job that used up its pages continues the resume. */
const continueDelaySeconds = 1;

/** Returns `counts` with each of `added` added to it. */
function addCounts(counts: ResumeCounts, added: Partial<ResumeCounts>): ResumeCounts {
  const sum = { ...counts };
  for (const [name, value] of Object.entries(added) as [keyof ResumeCounts, number][]) {
    sum[name] += value;
  }
  return sum;
}

/** The end of a job's part of the resume. */
type WalkEnd =
  | { kind: 'done' }
  | { kind: 'continue' }
  | { kind: 'stopped'; reason: string };

/**
 * Checks each open pull request of an installation with GitHub after a suspension ended,
 * because GitHub sends no webhook events to a suspended installation. First it queues a check of
 * each pull request that has a run not marked closed. Then it lists the repositories that the
 * installation can access and their open pull requests on GitHub. It queues a check of each
 * listed pull request without such a run, such as one opened during the suspension, and that
 * check creates the run of its head commit (see handleConfirmPullRequestJob).
 *
 * Each batch of checks is queued in a transaction of its own that also stores the progress on
 * the job's row, so a retry continues after the last batch. Each batch first reads the
 * installation's marks, and the job stops when the installation was suspended or deleted
 * again, when another resume of the installation is queued, or when the job was cancelled.
 * After `pagesPerResumeJob` pages a new job continues the resume. A GitHub rate limit that
 * Octokit does not wait out queues a new job that continues when the limit lifts, unless that
 * is later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS allows. Other failures fail the job, and
 * pg-boss retries it with backoff.
 */
export async function handleResumeInstallationJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<ResumeInstallationJobData>,
): Promise<void> {
  const data = resumeInstallationJobData.parse(job.data);
  const { installationId } = data;
  const key = String(installationId);
  const logger = context.logger.child({
    jobId: job.id,
    installationId,
    queue: resumeInstallationQueue,
  });
  const running = await findRunningCheck(context.db, resumeInstallationQueue, key, job.id);
  if (running) {
    await deferCheck(context.db, logger, {
      event: 'job.resume_installation.deferred',
      subject: 'installation',
      queue: resumeInstallationQueue,
      key,
      delaySeconds: resumeDelaySeconds,
      runningJobId: running,
      queueNext: (tx, startAfter) =>
        queueInstallationResume(tx, context.boss, installationId, {
          ...(startAfter === undefined ? {} : { startAfter }),
          ...(data.progress ? { progress: data.progress } : {}),
          ...(data.rateLimitedSince === undefined ? {} : { rateLimitedSince: data.rateLimitedSince }),
        }),
    });
    return;
  }

  const walk = new ResumeWalk(context, job.id, installationId, data.progress ?? initialResumeProgress());
  let end: WalkEnd;
  try {
    const octokit = await requireGitHubApp(context).installationOctokit(installationId);
    end = await walk.run(octokit, logger);
  } catch (error) {
    await handleWalkError(context, logger, job, walk, data, error);
    return;
  }
  await finishWalk(context, logger, walk, end);
}

/** Logs the end of a job's part of the resume, and queues the job that continues it. */
async function finishWalk(
  context: AppContext,
  logger: Logger,
  walk: ResumeWalk,
  end: WalkEnd,
): Promise<void> {
  const { counts } = walk.progress;
  if (end.kind === 'done') {
    logger.info(
      { event: 'job.resume_installation.completed', ...counts },
      `resume finished: ${counts.checksQueued} pull request check(s) queued for ` +
        `${counts.knownPullRequests} known and ${counts.newPullRequests} new open pull request(s)`,
    );
    return;
  }
  if (end.kind === 'stopped') {
    logStopped(logger, end.reason, walk);
    return;
  }
  const startAfter = new Date(Date.now() + continueDelaySeconds * 1000);
  const next = await walk.queueContinuation(startAfter);
  if (next.kind === 'stopped') {
    logStopped(logger, next.reason, walk);
    return;
  }
  logger.info(
    { event: 'job.resume_installation.continued', nextJobId: next.jobId, ...counts, ...walk.position() },
    `resume read ${pagesPerResumeJob} GitHub pages, so a new job continues it`,
  );
}

function logStopped(logger: Logger, reason: string, walk: ResumeWalk): void {
  logger.info(
    { event: 'job.resume_installation.stopped', reason, ...walk.progress.counts },
    'resume stopped before it checked every open pull request',
  );
}

/**
 * Handles an error of the walk. Missing credentials and an unavailable installation end the
 * job, and a rate limit queues a job that continues when it lifts. Any other error fails the
 * job, so pg-boss retries it from the progress stored with the last batch.
 */
async function handleWalkError(
  context: AppContext,
  logger: Logger,
  job: PgBoss.JobWithMetadata<ResumeInstallationJobData>,
  walk: ResumeWalk,
  data: ResumeInstallationJobData,
  error: unknown,
): Promise<void> {
  if (error instanceof ConfigError) {
    logger.warn(
      { event: 'job.resume_installation.not_configured', reason: error.message },
      'resume skipped because GitHub App credentials are not configured, so open pull requests ' +
        'are analyzed after their next event',
    );
    return;
  }
  const unavailable = asInstallationUnavailable(error);
  if (unavailable) {
    const recorded = await recordInstallationUnavailable(context.db, unavailable);
    logStopped(logger, recorded.message, walk);
    return;
  }
  const rateLimit = asGitHubRateLimit(error);
  if (rateLimit && (await waitForRateLimit(context, logger, walk, data, rateLimit, error))) return;

  const finalAttempt = job.retryCount >= job.retryLimit;
  logger.error(
    {
      event: 'job.resume_installation.failed',
      err: toSafeError(error),
      attempt: job.retryCount,
      finalAttempt,
      ...walk.progress.counts,
      ...walk.position(),
      ...(rateLimit ? rateLimitFields(rateLimit) : {}),
    },
    finalAttempt
      ? 'resume failed for the last time, so the open pull requests it did not reach are ' +
          'analyzed after their next event'
      : 'resume failed, and it is retried with backoff from the last batch it queued',
  );
  throw error;
}

/**
 * Queues the job that continues the walk when the rate limit lifts, and returns true when the
 * job is done: that job was queued, or the walk stopped. Returns false when the limit lifts
 * later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS after the walk's first rate-limited response,
 * so that the job fails and pg-boss retries it with backoff. That time counts from the first
 * rate-limited response of the jobs that read no page since.
 */
async function waitForRateLimit(
  context: AppContext,
  logger: Logger,
  walk: ResumeWalk,
  data: ResumeInstallationJobData,
  rateLimit: GitHubRateLimit,
  error: unknown,
): Promise<boolean> {
  // A job that read a page since it started made progress, so its wait counts from now.
  const since = walk.pagesRead === 0 ? (data.rateLimitedSince ?? Date.now()) : Date.now();
  const maxWaitSeconds = context.config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS;
  const fields = rateLimitFields(rateLimit, since);
  if (maxWaitSeconds === 0 || rateLimit.liftsAt - since > maxWaitSeconds * 1000) {
    logger.warn(
      { event: 'job.resume_installation.rate_limit_too_long', ...fields, maxWaitSeconds, err: error },
      'GitHub rate limit lifts later than GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS allows, so the ' +
        'resume fails and is retried with backoff',
    );
    return false;
  }
  const next = await walk.queueContinuation(new Date(rateLimit.liftsAt), since);
  if (next.kind === 'stopped') {
    logStopped(logger, next.reason, walk);
    return true;
  }
  logger.warn(
    {
      event: 'job.resume_installation.rate_limited',
      ...fields,
      nextJobId: next.jobId,
      ...walk.progress.counts,
      ...walk.position(),
      err: error,
    },
    'GitHub rate-limited the resume, which continues in a new job when the limit lifts',
  );
  return true;
}

/**
 * One job's part of a resume. `progress` is the position that the job reached, which the
 * database stores with each batch, and a job that continues the resume starts from.
 */
class ResumeWalk {
  progress: ResumeProgress;
  /** GitHub pages that this job requested, including one that failed. */
  private pagesRequested = 0;
  /** GitHub pages that this job read without an error. */
  pagesRead = 0;

  constructor(
    private readonly context: AppContext,
    private readonly jobId: string,
    private readonly installationId: number,
    progress: ResumeProgress,
  ) {
    this.progress = progress;
  }

  /** Returns the position in the listing, for log lines. */
  position() {
    const { repositoryPage, repositoryIndex, pullRequestPage } = this.progress;
    return { repositoryPage, repositoryIndex, pullRequestPage };
  }

  /** Queues the known pull requests, then those that GitHub lists, from `progress` on. */
  async run(octokit: Octokit, logger: Logger): Promise<WalkEnd> {
    while (!this.progress.knownDone) {
      const stopped = await this.queueKnownBatch();
      if (stopped) return { kind: 'stopped', reason: stopped };
    }
    let repositories: { list: InstallationRepository[]; hasNextPage: boolean } | null = null;
    for (;;) {
      if (repositories === null) {
        if (this.progress.repositoryPage > maxRepositoryPages) {
          logger.warn(
            { event: 'job.resume_installation.truncated', maxRepositoryPages },
            `resume read ${maxRepositoryPages} pages of repositories and lists no more`,
          );
          return { kind: 'done' };
        }
        if (this.pagesRequested >= pagesPerResumeJob) return { kind: 'continue' };
        this.pagesRequested += 1;
        const read = await readInstallationRepositories(octokit, this.progress.repositoryPage);
        this.pagesRead += 1;
        repositories = { list: read.repositories, hasNextPage: read.hasNextPage };
      }
      const repository = repositories.list[this.progress.repositoryIndex];
      if (!repository) {
        if (!repositories.hasNextPage) return { kind: 'done' };
        this.progress = {
          ...this.progress,
          repositoryPage: this.progress.repositoryPage + 1,
          repositoryIndex: 0,
          pullRequestPage: 1,
        };
        repositories = null;
        continue;
      }
      if (this.progress.pullRequestPage > maxPullRequestPages) {
        logger.warn(
          { event: 'job.resume_installation.truncated', repository: repository.fullName, maxPullRequestPages },
          `resume read ${maxPullRequestPages} pages of open pull requests of the repository and lists no more`,
        );
        this.progress = this.nextRepository();
        continue;
      }
      if (this.pagesRequested >= pagesPerResumeJob) return { kind: 'continue' };
      this.pagesRequested += 1;
      const stopped = await this.queueListedPage(octokit, repository, logger);
      if (stopped) return { kind: 'stopped', reason: stopped };
    }
  }

  /** Returns the progress that moves on to the next repository of the page. */
  private nextRepository(): ResumeProgress {
    const { counts } = this.progress;
    return {
      ...this.progress,
      repositoryIndex: this.progress.repositoryIndex + 1,
      pullRequestPage: 1,
      counts: { ...counts, repositories: counts.repositories + 1 },
    };
  }

  /** Queues the next batch of known open pull requests. Returns why it stopped, or null. */
  private async queueKnownBatch(): Promise<string | null> {
    return this.context.db.transaction(async (tx) => {
      const stopped = await this.findStopReason(tx);
      if (stopped) return stopped;
      const { lastKnown } = this.progress;
      const after = lastKnown
        ? sql`(${prRuns.repositoryId}, ${prRuns.prNumber}) > (${lastKnown.repositoryId}, ${lastKnown.prNumber})`
        : undefined;
      // One row per pull request, from its newest run.
      const known = await tx
        .selectDistinctOn([prRuns.repositoryId, prRuns.prNumber], {
          repositoryId: prRuns.repositoryId,
          repository: prRuns.repository,
          prNumber: prRuns.prNumber,
        })
        .from(prRuns)
        .where(and(eq(prRuns.installationId, this.installationId), isNull(prRuns.prClosedAt), after))
        .orderBy(prRuns.repositoryId, prRuns.prNumber, desc(prRuns.createdAt))
        .limit(batchSize);
      const last = known.at(-1);
      const queued = await this.queueChecks(tx, known);
      await this.storeProgress(tx, {
        ...this.progress,
        lastKnown: last ? { repositoryId: last.repositoryId, prNumber: last.prNumber } : lastKnown,
        knownDone: known.length < batchSize,
        counts: addCounts(this.progress.counts, { knownPullRequests: known.length, ...queued }),
      });
      return null;
    });
  }

  /**
   * Reads the repository's page `pullRequestPage` of open pull requests, and queues a check of
   * each one that has no run not marked closed, because the first step queued those. Returns
   * why it stopped, or null.
   */
  private async queueListedPage(
    octokit: Octokit,
    repository: InstallationRepository,
    logger: Logger,
  ): Promise<string | null> {
    const read = await readOpenPullRequests(octokit, repository, this.progress.pullRequestPage);
    this.pagesRead += 1;
    if (read === null) {
      logger.info(
        { event: 'job.resume_installation.repository_not_found', repository: repository.fullName },
        'GitHub returned 404 for the open pull requests of a listed repository, so the resume skips it',
      );
      this.progress = this.nextRepository();
      return null;
    }
    return this.context.db.transaction(async (tx) => {
      const stopped = await this.findStopReason(tx);
      if (stopped) return stopped;
      const fresh = await this.withoutKnown(tx, repository.id, read.pullRequests);
      const queued = await this.queueChecks(tx, fresh);
      const next = read.hasNextPage
        ? { ...this.progress, pullRequestPage: this.progress.pullRequestPage + 1 }
        : this.nextRepository();
      const listed = {
        openPullRequests: read.pullRequests.length,
        newPullRequests: fresh.length,
        ...queued,
      };
      await this.storeProgress(tx, { ...next, counts: addCounts(next.counts, listed) });
      return null;
    });
  }

  /** Returns the pull requests of repository `repositoryId` that have no run not marked closed. */
  private async withoutKnown(
    tx: Transaction,
    repositoryId: number,
    pullRequests: OpenPullRequest[],
  ): Promise<OpenPullRequest[]> {
    if (pullRequests.length === 0) return [];
    const known = await tx
      .selectDistinct({ prNumber: prRuns.prNumber })
      .from(prRuns)
      .where(
        and(
          eq(prRuns.installationId, this.installationId),
          eq(prRuns.repositoryId, repositoryId),
          inArray(prRuns.prNumber, pullRequests.map((pullRequest) => pullRequest.prNumber)),
          isNull(prRuns.prClosedAt),
        ),
      );
    const numbers = new Set(known.map((row) => row.prNumber));
    return pullRequests.filter((pullRequest) => !numbers.has(pullRequest.prNumber));
  }

  /** Queues a check of each pull request, and counts those queued and those queued already. */
  private async queueChecks(
    tx: Transaction,
    pullRequests: OpenPullRequest[],
  ): Promise<Pick<ResumeCounts, 'checksQueued' | 'checksQueuedAlready'>> {
    let queued = 0;
    for (const pullRequest of pullRequests) {
      const jobId = await queuePullRequestConfirmation(tx, this.context.boss, {
        installationId: this.installationId,
        ...pullRequest,
      });
      if (jobId !== null) queued += 1;
    }
    return { checksQueued: queued, checksQueuedAlready: pullRequests.length - queued };
  }

  /**
   * Stores `progress` as this job's data in the batch's transaction, so that pg-boss retries
   * the job from there, and keeps it for the rest of the walk once the transaction commits.
   * pg-boss 10.4 reads a retried job's data from its row.
   */
  private async storeProgress(tx: Transaction, progress: ResumeProgress): Promise<void> {
    const data: ResumeInstallationJobData = { installationId: this.installationId, progress };
    await tx.execute(sql`
      UPDATE pgboss.job SET data = ${JSON.stringify(data)}::jsonb
      WHERE name = ${resumeInstallationQueue} AND id = ${this.jobId}`);
    this.progress = progress;
  }

  /**
   * Returns why the resume must stop, or null. Locks the installation's row FOR SHARE as work
   * that starts for it does, so a suspend either committed before and is seen here, or waits for
   * this transaction.
   */
  private async findStopReason(tx: Transaction): Promise<string | null> {
    const [row] = await tx
      .select({ suspendedAt: installations.suspendedAt, deletedAt: installations.deletedAt })
      .from(installations)
      .where(eq(installations.id, this.installationId))
      .for('share');
    if (!row) return 'installation not recorded';
    if (row.deletedAt) return 'installation deleted';
    if (row.suspendedAt) return 'installation suspended';
    const key = String(this.installationId);
    const later = await findLaterCheck(tx, resumeInstallationQueue, key, this.jobId);
    if (later) return later;
    const [job] = await tx.execute<{ state: string }>(sql`
      SELECT state::text AS state FROM pgboss.job
      WHERE name = ${resumeInstallationQueue} AND id = ${this.jobId}`);
    if (job?.state === 'cancelled') return `resume job ${this.jobId} was cancelled`;
    return null;
  }

  /**
   * Queues the job that continues the walk from `progress` at `startAfter`, unless the walk
   * must stop. `rateLimitedSince` is the time of the first rate-limited response it waits for.
   */
  async queueContinuation(
    startAfter: Date,
    rateLimitedSince?: number,
  ): Promise<{ kind: 'queued'; jobId: string | null } | { kind: 'stopped'; reason: string }> {
    return this.context.db.transaction(async (tx) => {
      const stopped = await this.findStopReason(tx);
      if (stopped) return { kind: 'stopped', reason: stopped };
      const jobId = await queueInstallationResume(tx, this.context.boss, this.installationId, {
        startAfter,
        progress: this.progress,
        ...(rateLimitedSince === undefined ? {} : { rateLimitedSince }),
      });
      return { kind: 'queued', jobId };
    });
  }
}
