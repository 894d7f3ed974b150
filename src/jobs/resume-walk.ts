import type { Octokit } from '@octokit/rest';
import { and, desc, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import { installations, prRuns } from '../db/schema/index.ts';
import {
  readInstallationRepositories,
  readOpenPullRequests,
  type ListedPullRequest,
  type OpenPullRequest,
} from '../github/open-pull-requests.ts';
import type { Logger } from '../logger.ts';
import { queuePullRequestConfirmation } from './confirm-pull-request-queue.ts';
import { findLaterCheck } from './keyed-checks.ts';
import {
  firstPullRequestCursor,
  isQueuedBefore,
  moveCursorPast,
  pullRequestsAfter,
  repositoryWindow,
  type RepositoryWindow,
} from './resume-cursor.ts';
import {
  queueInstallationResume,
  resumeInstallationQueue,
  type RepositoryListing,
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
    const { repositoryPage, repository } = this.progress;
    return {
      repositoryPage,
      repository: repository?.fullName ?? null,
      pullRequestPage: repository?.pullRequests.page ?? null,
    };
  }

  /** Queues the known pull requests, then those that GitHub lists, from `progress` on. */
  async run(octokit: Octokit, logger: Logger): Promise<WalkEnd> {
    while (!this.progress.knownDone) {
      const stopped = await this.queueKnownBatch();
      if (stopped) return { kind: 'stopped', reason: stopped };
    }
    // The window stays valid until every repository on it is done, and is then read again.
    let window: RepositoryWindow | null = null;
    for (;;) {
      const { repository } = this.progress;
      if (repository) {
        const end = await this.listPullRequests(octokit, repository, logger);
        if (end) return end;
        continue;
      }
      if (this.progress.repositoryPage > maxRepositoryPages) {
        logger.warn(
          { event: 'job.resume_installation.truncated', maxRepositoryPages },
          `resume read ${maxRepositoryPages} pages of repositories and lists no more`,
        );
        return { kind: 'done' };
      }
      window ??= await this.readRepositoryWindow(octokit);
      if (window === null) return { kind: 'continue' };
      const step = this.pickRepository(window);
      if (step === 'done') return { kind: 'done' };
      if (step === 'next page') window = null;
    }
  }

  /**
   * Makes the first repository of `window` that is not done the one to list, or counts it when
   * it is archived. Moves to the next page once all are done, with the ids of the page itself
   * as the repositories done, because the next window reads that page again.
   */
  private pickRepository(window: RepositoryWindow): 'same page' | 'next page' | 'done' {
    const done = new Set(this.progress.repositoriesDone);
    const next = window.repositories.find((listed) => !done.has(listed.id));
    if (next?.archived) {
      // GitHub rejects the check runs and comments of an archived repository, so its pull
      // requests get no check and no run.
      this.progress = this.finishRepository(this.progress, next.id, 'archivedRepositories');
      return 'same page';
    }
    if (next) {
      const repository = {
        id: next.id,
        fullName: next.fullName,
        pullRequests: firstPullRequestCursor,
      };
      this.progress = { ...this.progress, repository };
      return 'same page';
    }
    if (!window.hasNextPage) return 'done';
    this.progress = {
      ...this.progress,
      repositoryPage: this.progress.repositoryPage + 1,
      repositoriesDone: window.pageIds,
    };
    return 'next page';
  }

  /**
   * Reads page `repositoryPage` of the installation's repositories, then the page before it.
   * Removals before the page move repositories to the page before it, so the second read finds
   * those that moved before the first read. Returns null once the job has read its pages.
   */
  private async readRepositoryWindow(octokit: Octokit): Promise<RepositoryWindow | null> {
    const pageNumber = this.progress.repositoryPage;
    if (!this.takePage()) return null;
    const page = await readInstallationRepositories(octokit, pageNumber);
    this.pagesRead += 1;
    if (pageNumber === 1) return repositoryWindow([], page);
    if (!this.takePage()) return null;
    const previous = await readInstallationRepositories(octokit, pageNumber - 1);
    this.pagesRead += 1;
    return repositoryWindow(previous.repositories, page);
  }

  /** Counts a GitHub page against the job's pages, and returns false once they are used up. */
  private takePage(): boolean {
    if (this.pagesRequested >= pagesPerResumeJob) return false;
    this.pagesRequested += 1;
    return true;
  }

  /**
   * Returns `progress` with repository `id` done: no repository being listed, the id in
   * `repositoriesDone`, and the repository counted in `counted`.
   */
  private finishRepository(
    progress: ResumeProgress,
    id: number,
    counted: 'repositories' | 'archivedRepositories' = 'repositories',
  ): ResumeProgress {
    return {
      ...progress,
      repository: null,
      repositoriesDone: [...progress.repositoriesDone, id],
      counts: addCounts(progress.counts, { [counted]: 1 }),
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
   * Reads the next pages of the repository's open pull requests and queues a check of each one
   * that the cursor has not passed and that has no run not marked closed, because the first
   * step queued those. Returns how the job ends, or null when it goes on.
   */
  private async listPullRequests(
    octokit: Octokit,
    repository: RepositoryListing,
    logger: Logger,
  ): Promise<WalkEnd | null> {
    if (repository.pullRequests.page > maxPullRequestPages) {
      logger.warn(
        { event: 'job.resume_installation.truncated', repository: repository.fullName, maxPullRequestPages },
        `resume read ${maxPullRequestPages} pages of open pull requests of the repository and lists no more`,
      );
      this.progress = this.finishRepository(this.progress, repository.id);
      return null;
    }
    const read = await this.readPullRequestPages(octokit, repository);
    if (read === 'used up') return { kind: 'continue' };
    if (read === 'not found') {
      logger.info(
        { event: 'job.resume_installation.repository_not_found', repository: repository.fullName },
        'GitHub returned 404 for the open pull requests of a listed repository, so the resume skips it',
      );
      this.progress = this.finishRepository(this.progress, repository.id);
      return null;
    }
    const listed = pullRequestsAfter(repository.pullRequests, read.pullRequests);
    const batches: ListedPullRequest[][] = [];
    for (let start = 0; start < listed.length; start += batchSize) {
      batches.push(listed.slice(start, start + batchSize));
    }
    // A page without new pull requests still moves the cursor to the next page.
    if (batches.length === 0) batches.push([]);
    for (const [index, batch] of batches.entries()) {
      const last = index === batches.length - 1;
      const stopped = await this.queueListedBatch(batch, last ? read : null);
      if (stopped) return { kind: 'stopped', reason: stopped };
    }
    return null;
  }

  /**
   * Reads the page of the cursor, then each page before it while a page starts with a pull
   * request that the cursor has not passed or is empty. Closed pull requests move later ones
   * to earlier pages, so such a page may follow pull requests not queued yet. Returns the pull
   * requests of the pages in page order, with the page of the cursor and whether GitHub has a
   * page after it.
   */
  private async readPullRequestPages(
    octokit: Octokit,
    repository: RepositoryListing,
  ): Promise<
    { pullRequests: ListedPullRequest[]; page: number; hasNextPage: boolean } | 'used up' | 'not found'
  > {
    const cursor = repository.pullRequests;
    const pages: ListedPullRequest[][] = [];
    let hasNextPage = false;
    for (let page = cursor.page; page >= 1; page -= 1) {
      if (!this.takePage()) return 'used up';
      const read = await readOpenPullRequests(octokit, repository, page);
      this.pagesRead += 1;
      if (read === null) return 'not found';
      if (page === cursor.page) hasNextPage = read.hasNextPage;
      pages.unshift(read.pullRequests);
      const first = read.pullRequests[0];
      if (first && isQueuedBefore(cursor, first)) break;
    }
    return { pullRequests: pages.flat(), page: cursor.page, hasNextPage };
  }

  /**
   * Queues a check of each pull request of `batch` that has no run not marked closed, and moves
   * the cursor past the batch. `end` is set on the last batch of the pages read: the cursor
   * then moves to the page after `end.page`, or the repository is done when GitHub has none.
   * Returns why it stopped, or null.
   */
  private async queueListedBatch(
    batch: ListedPullRequest[],
    end: { page: number; hasNextPage: boolean } | null,
  ): Promise<string | null> {
    return this.context.db.transaction(async (tx) => {
      const stopped = await this.findStopReason(tx);
      if (stopped) return stopped;
      const repository = this.progress.repository!;
      const open = batch.map(({ repositoryId, repository: name, prNumber }) => ({
        repositoryId,
        repository: name,
        prNumber,
      }));
      const fresh = await this.withoutKnown(tx, repository.id, open);
      const queued = await this.queueChecks(tx, fresh);
      const counts = addCounts(this.progress.counts, {
        openPullRequests: batch.length,
        newPullRequests: fresh.length,
        ...queued,
      });
      const cursor = moveCursorPast(repository.pullRequests, batch);
      let next: ResumeProgress;
      if (end === null) {
        next = { ...this.progress, repository: { ...repository, pullRequests: cursor }, counts };
      } else if (end.hasNextPage) {
        const pullRequests = { ...cursor, page: end.page + 1 };
        next = { ...this.progress, repository: { ...repository, pullRequests }, counts };
      } else {
        next = this.finishRepository({ ...this.progress, counts }, repository.id);
      }
      await this.storeProgress(tx, next);
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
