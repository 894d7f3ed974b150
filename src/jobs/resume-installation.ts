import type PgBoss from 'pg-boss';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import { toSafeError } from '../errors/safe-error.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import type { Logger } from '../logger.ts';
import { deferCheck, findRunningCheck } from './keyed-checks.ts';
import { rateLimitFields } from './rate-limit-wait.ts';
import {
  initialResumeProgress,
  queueInstallationResume,
  resumeDelaySeconds,
  resumeInstallationJobData,
  resumeInstallationQueue,
  type ResumeInstallationJobData,
} from './resume-installation-queue.ts';
import { pagesPerResumeJob, ResumeWalk, type WalkEnd } from './resume-walk.ts';

/** Seconds after which a job that used up its pages continues the resume. */
const continueDelaySeconds = 1;

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
