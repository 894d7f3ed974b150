import type { Octokit } from '@octokit/rest';
import { and, desc, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import { installations, prRuns } from '../db/schema/index.ts';
import {
  readInstallationRepositories,
  readOpenPullRequests,
  type InstallationRepository,
  type OpenPullRequest,
} from '../github/open-pull-requests.ts';
import type { Logger } from '../logger.ts';
import { queuePullRequestConfirmation } from './confirm-pull-request-queue.ts';
import { findLaterCheck } from './keyed-checks.ts';
import {
  queueInstallationResume,
  resumeInstallationQueue,
  type ResumeCounts,
  type ResumeInstallationJobData,
  type ResumeProgress,
} from './resume-installation-queue.ts';

/** Pull requests queued in one transaction, one page of a listing at most. */
const batchSize = 100;

/**
 * GitHub pages that one job reads before a new job continues the resume, so that a job of an
 * installation with many repositories ends well within the queue's 15-minute time limit. At an
 * estimated 1 s a page, 50 pages and two of Octokit's rate limit waits of up to 60 s fit.
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
 * Like maxRepositoryPages, it stops a listing that never ends, and it is not a GitHub limit.
 */
export const maxPullRequestPages = 30;

/** Returns `counts` with each of `added` added to it. */
function addCounts(counts: ResumeCounts, added: Partial<ResumeCounts>): ResumeCounts {
  const sum = { ...counts };
  for (const [name, value] of Object.entries(added) as [keyof ResumeCounts, number][]) {
    sum[name] += value;
  }
  return sum;
}

/** The end of a job's part of the resume. */
export type WalkEnd =
  | { kind: 'done' }
  | { kind: 'continue' }
  | { kind: 'stopped'; reason: string };

/**
 * One job's part of a resume. `progress` is the position that the job reached, which the
 * database stores with each batch, and a job that continues the resume starts from.
 */
export class ResumeWalk {
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
      // GitHub rejects the check runs and comments of an archived repository, so its pull
      // requests get no check and no run.
      if (repository.archived) {
        this.progress = this.nextRepository('archivedRepositories');
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

  /**
   * Returns the progress that moves on to the next repository of the page, with the repository
   * left counted in `counted`.
   */
  private nextRepository(
    counted: 'repositories' | 'archivedRepositories' = 'repositories',
  ): ResumeProgress {
    return {
      ...this.progress,
      repositoryIndex: this.progress.repositoryIndex + 1,
      pullRequestPage: 1,
      counts: addCounts(this.progress.counts, { [counted]: 1 }),
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
