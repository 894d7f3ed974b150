import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { Transaction } from '../db/client.ts';
import { githubId } from '../events/github-id.ts';
import { repositoryFullName } from '../events/github-names.ts';
import { transactionDb } from './boss.ts';
import { checkQueueOptions } from './keyed-checks.ts';
import { rateLimitedSince } from './rate-limit-wait.ts';

export const resumeInstallationQueue = 'resume-installation';

const count = z.number().int().nonnegative();

/** Totals of a resume, carried from job to job, which the log lines report. */
const resumeCounts = z.object({
  /** Pull requests with a run not marked closed, which were queued first. */
  knownPullRequests: count,
  /** Repositories whose open pull requests were listed. */
  repositories: count,
  /**
   * Archived repositories, whose open pull requests were not listed. Progress stored before
   * this count existed lacks it.
   */
  archivedRepositories: count.default(0),
  /** Open pull requests that GitHub listed. */
  openPullRequests: count,
  /** Listed pull requests without a run not marked closed, which were queued after the listing. */
  newPullRequests: count,
  /** Checks of pull requests that this resume queued. */
  checksQueued: count,
  /** Pull requests whose check was queued already, so the queue kept that one. */
  checksQueuedAlready: count,
});
export type ResumeCounts = z.infer<typeof resumeCounts>;

/**
 * The position in the open pull requests of one repository, which the resume lists oldest first
 * (sort `created`, direction `asc`). A pull request counts as queued when it was created before
 * `createdAt`, or at `createdAt` with a number in `numbers`. This position does not move when a
 * pull request is opened or closed, unlike the page number.
 */
const pullRequestCursor = z.object({
  /** The page to read next, from 1. Closes can move unqueued pull requests to earlier pages. */
  page: z.number().int().positive(),
  /** `created_at` of the newest pull request queued, or null before the first. */
  createdAt: z.iso.datetime({ offset: true }).nullable(),
  /**
   * Numbers of the pull requests queued with `created_at` equal to `createdAt`. GitHub's times
   * have whole seconds, and it documents no order among pull requests of the same second.
   */
  numbers: z.array(z.number().int().positive()),
});
export type PullRequestCursor = z.infer<typeof pullRequestCursor>;

/** The repository whose open pull requests a resume lists, with its position in them. */
const repositoryListing = z.object({
  id: githubId,
  /** OWNER/NAME as GET /installation/repositories listed it. */
  fullName: repositoryFullName,
  pullRequests: pullRequestCursor,
});
export type RepositoryListing = z.infer<typeof repositoryListing>;

/**
 * The position from which a resume continues. First it queues the pull requests that Fixwright
 * has a run of not marked closed, in batches ordered by repository id and number, and
 * `lastKnown` is the last one queued. Then it reads page `repositoryPage` of GET
 * /installation/repositories and the page before it, and lists the open pull requests of each
 * repository on them that is not in `repositoriesDone`.
 * NOTE: GitHub documents no order for GET /installation/repositories, so the position is a page
 * number. The page before it is read again, which finds the repositories that removals before
 * the position moved back by up to one page (100). More removals between the reads of two pages
 * can skip a repository. A repository added before the position moves a listed one to a later
 * page, which lists it again.
 */
export const resumeProgress = z.object({
  lastKnown: z.object({ repositoryId: githubId, prNumber: z.number().int().positive() }).nullable(),
  knownDone: z.boolean(),
  repositoryPage: z.number().int().positive(),
  /**
   * Ids of the repositories whose pull requests were listed, of those on page `repositoryPage`
   * and the page before it when they were read.
   */
  repositoriesDone: z.array(githubId),
  /** The repository whose pull requests are being listed, or null between repositories. */
  repository: repositoryListing.nullable(),
  counts: resumeCounts,
});
export type ResumeProgress = z.infer<typeof resumeProgress>;

/**
 * The progress that Fixwright stored before it kept a cursor: a page, an index on it and a page
 * of pull requests. It continues on that page of repositories with none marked done, so it lists
 * the repositories of that page and the page before it again.
 */
const pagedResumeProgress = z
  .object({
    lastKnown: resumeProgress.shape.lastKnown,
    knownDone: z.boolean(),
    repositoryPage: z.number().int().positive(),
    repositoryIndex: z.number().int().nonnegative(),
    pullRequestPage: z.number().int().positive(),
    counts: resumeCounts,
  })
  .transform(
    (paged): ResumeProgress => ({
      lastKnown: paged.lastKnown,
      knownDone: paged.knownDone,
      repositoryPage: paged.repositoryPage,
      repositoriesDone: [],
      repository: null,
      counts: paged.counts,
    }),
  );

/** Returns the progress of a new resume. */
export function initialResumeProgress(): ResumeProgress {
  return {
    lastKnown: null,
    knownDone: false,
    repositoryPage: 1,
    repositoriesDone: [],
    repository: null,
    counts: {
      knownPullRequests: 0,
      repositories: 0,
      archivedRepositories: 0,
      openPullRequests: 0,
      newPullRequests: 0,
      checksQueued: 0,
      checksQueuedAlready: 0,
    },
  };
}

/**
 * A resume of an installation's pull requests after a suspension ended. `progress` is absent
 * for a new resume, and set on a job that continues one (see resumeProgress).
 * `rateLimitedSince` is set on a job that waits for a GitHub rate limit.
 */
export const resumeInstallationJobData = z.object({
  installationId: githubId,
  progress: z.union([resumeProgress, pagedResumeProgress]).optional(),
  rateLimitedSince,
});
export type ResumeInstallationJobData = z.infer<typeof resumeInstallationJobData>;

/**
 * Retries as for installation checks (see checkQueueOptions), with a longer time limit, because
 * a job reads up to `pagesPerResumeJob` pages of GitHub. The queue's policy is
 * `checkQueuePolicy` with the installation id as singleton key: it keeps at most one queued
 * resume per installation, and the handler runs one resume of an installation at a time.
 */
export const resumeInstallationQueueOptions = {
  ...checkQueueOptions,
  expireInSeconds: 15 * 60,
} satisfies Omit<PgBoss.Queue, 'name' | 'policy'>;

/**
 * Seconds between the end of a suspension and the resume, as for the check of the installation
 * (confirmDelaySeconds): GitHub's API gets time to hand out tokens for the installation again.
 * NOTE: the value is a guess, because no GitHub document states how soon it does.
 */
export const resumeDelaySeconds = 10;

/**
 * Queues a resume of the installation's pull requests in the caller's transaction, to start at
 * `startAfter` (seconds from now, or a time). Returns the job id, or null when a resume of the
 * installation is queued already and has not started.
 */
export async function queueInstallationResume(
  tx: Transaction,
  boss: PgBoss,
  installationId: number,
  options: {
    startAfter?: number | Date;
    progress?: ResumeProgress;
    rateLimitedSince?: number;
  } = {},
): Promise<string | null> {
  const data: ResumeInstallationJobData = { installationId };
  if (options.progress) data.progress = options.progress;
  if (options.rateLimitedSince !== undefined) data.rateLimitedSince = options.rateLimitedSince;
  return boss.send(resumeInstallationQueue, data, {
    singletonKey: String(installationId),
    startAfter: options.startAfter ?? resumeDelaySeconds,
    db: transactionDb(tx),
  });
}
