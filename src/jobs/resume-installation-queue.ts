import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { Transaction } from '../db/client.ts';
import { githubId } from '../events/github-id.ts';
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
 * The position from which a resume continues. First it queues the pull requests that Fixwright has a run of not
 * marked closed, in batches ordered by repository id and number, and `lastKnown` is the last one
 * queued. Then it lists GitHub's open pull requests, page by page: `repositoryPage` of GET
 * /installation/repositories, the repository at `repositoryIndex` on that page, and its page
 * `pullRequestPage` of open pull requests.
 * NOTE: a repository added to or removed from the installation between two jobs of a resume
 * shifts the pages, so the next job can skip a repository or list one twice. A pull request
 * listed twice is not checked twice while its first check waits to start.
 */
export const resumeProgress = z.object({
  lastKnown: z.object({ repositoryId: githubId, prNumber: z.number().int().positive() }).nullable(),
  knownDone: z.boolean(),
  repositoryPage: z.number().int().positive(),
  repositoryIndex: z.number().int().nonnegative(),
  pullRequestPage: z.number().int().positive(),
  counts: resumeCounts,
});
export type ResumeProgress = z.infer<typeof resumeProgress>;

/** Returns the progress of a new resume. */
export function initialResumeProgress(): ResumeProgress {
  return {
    lastKnown: null,
    knownDone: false,
    repositoryPage: 1,
    repositoryIndex: 0,
    pullRequestPage: 1,
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
  progress: resumeProgress.optional(),
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
