import { ConfigError } from '../config/env.ts';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import type { AppContext } from '../context.ts';
import { toSafeError } from '../errors/safe-error.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import { InvalidRepositoryNameError } from '../github/repository-name.ts';
import { GitHubResponseTooLargeError } from '../github/responses.ts';
import type { Logger } from '../logger.ts';
import { isAppCredentialRejection } from '../github/token-request.ts';
import { analyzeRun, failRun, recordFailedAttempt } from '../runs/analyze-run.ts';
import { clearRunRateLimit, runWork } from '../runs/run-rate-limit.ts';
import { JobError, toJobError } from './job-error.ts';
import {
  logRateLimitQueueFailure,
  queueAfterRateLimit,
  rateLimitedSince,
  rateLimitFields,
} from './rate-limit-wait.ts';

export const analyzeQueue = 'analyze';

export const analyzeJobData = z.object({ runId: z.uuid(), rateLimitedSince });
export type AnalyzeJobData = z.infer<typeof analyzeJobData>;

export const analyzeQueueOptions = {
  retryLimit: 4,
  retryDelay: 5,
  retryBackoff: true,
  expireInSeconds: 15 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/**
 * Analyzes one run. Safe to retry: findings of the run are replaced, not appended. A suspended
 * or uninstalled installation, a GitHub response over the size limit, an invalid stored
 * repository name, or GitHub's 401 to the app's JSON web token fails the run at once and
 * completes the job without a retry. A GitHub rate limit ends the job and queues the next
 * attempt for when the limit lifts (see `waitForRateLimit`). Another failed attempt stores its
 * error on the run until the retry.
 */
export async function handleAnalyzeJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<AnalyzeJobData>,
): Promise<void> {
  const data = analyzeJobData.parse(job.data);
  const { runId } = data;
  const logger = context.logger.child({ jobId: job.id, runId, queue: analyzeQueue });
  const startedAt = Date.now();
  try {
    await clearRunRateLimit(context.db, runId, job.id);
    const outcome = await analyzeRun(context, runId, logger, job.id);
    logger.info(
      { event: 'job.analyze.completed', durationMs: Date.now() - startedAt, ...outcome },
      'analysis finished',
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      // Missing credentials will still be missing on a retry; fail now with what to set.
      await failRun(context.db, { runId, jobId: job.id }, error);
      logger.warn(
        { event: 'job.analyze.not_configured', reason: error.message },
        'analysis stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      // The recorded error names the account, which GitHub's token error does not.
      const recorded = await recordInstallationUnavailable(context.db, unavailable);
      await failRun(context.db, { runId, jobId: job.id }, recorded);
      logger.warn(
        {
          event: 'job.analyze.stopped',
          installationId: unavailable.installationId,
          reason: unavailable.reason,
        },
        'analysis stopped: the installation is unavailable',
      );
      return;
    }
    const permanent = describePermanentFailure(error);
    if (permanent) {
      // A retry would fail the same way, so the run fails now.
      await failRun(context.db, { runId, jobId: job.id }, error);
      logger.error(
        {
          event: 'job.analyze.failed',
          err: toSafeError(error),
          attempt: job.retryCount,
          finalAttempt: true,
        },
        `analysis failed: ${permanent}`,
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = asGitHubRateLimit(error);
    if (rateLimit) {
      try {
        await waitForRateLimit(context, job.id, data, rateLimit, error, logger);
      } catch (queueError) {
        // The transaction rolled back, so the run still names this job, and pg-boss retries it
        // unless this was the last attempt.
        logRateLimitQueueFailure(logger, 'job.analyze', queueError, rateLimit, job);
        if (finalAttempt) await failRun(context.db, { runId, jobId: job.id }, error);
        throw toJobError(queueError);
      }
      return;
    }
    const safe = toSafeError(error);
    logger.error(
      { event: 'job.analyze.failed', err: safe, attempt: job.retryCount, finalAttempt },
      'analysis failed',
    );
    const target = { runId, jobId: job.id };
    const attempts = { attempt: job.retryCount + 1, attempts: job.retryLimit + 1 };
    const stored = finalAttempt
      ? failRun(context.db, target, error)
      : recordFailedAttempt(context.db, target, error, attempts);
    await stored.catch((failError: unknown) => {
      logger.error(
        { event: 'job.analyze.store_failure_failed', err: toSafeError(failError) },
        'failed to store the run failure',
      );
    });
    // pg-boss stores the thrown error in its job table, so it gets the logged fields only.
    throw new JobError(safe);
  }
}

/**
 * Returns the log message's reason when `error` fails the analysis the same way on every
 * retry, or null otherwise.
 */
function describePermanentFailure(error: unknown): string | null {
  if (error instanceof GitHubResponseTooLargeError) return 'a GitHub response is larger than the limit';
  if (error instanceof InvalidRepositoryNameError) return "the run's stored repository name is invalid";
  // The app's key is read only at start, so a rejected JSON web token stays rejected.
  if (isAppCredentialRejection(error)) {
    return "GitHub rejected the app's JSON web token; check APP_ID and PRIVATE_KEY_PATH";
  }
  return null;
}

/**
 * Queues a new analyze job of the run that starts when the rate limit lifts (see
 * `queueAfterRateLimit`), and stores its id on the run, so closing the pull request, a new
 * commit or a suspend cancels it. When the limit lifts later than the maximum wait allows, it
 * fails the run with that reason instead, and the job ends without a retry.
 *
 * Nothing is queued when job `jobId` no longer analyzes the run: the run is no longer queued or
 * analyzing (cancelled, superseded, or completed by another job), or it names another analyze
 * job. An analysis writes nothing to GitHub, so the new job simply starts over.
 */
async function waitForRateLimit(
  context: AppContext,
  jobId: string,
  data: AnalyzeJobData,
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
): Promise<void> {
  const { runId } = data;
  const job = { queue: analyzeQueue, id: jobId, data, event: 'job.analyze' };
  const work = runWork(runId, jobId, {
    queue: analyzeQueue,
    statuses: ['queued', 'analyzing'],
    jobColumn: 'analyzeJobId',
  });
  const outcome = await queueAfterRateLimit(context, job, rateLimit, error, logger, work);

  if (outcome.kind === 'too_long') {
    await failRun(context.db, { runId, jobId }, outcome.error);
  } else if (outcome.kind === 'unavailable') {
    await failRun(context.db, { runId, jobId }, outcome.unavailable);
  } else if (outcome.kind !== 'queued') {
    logger.info(
      {
        event: 'job.analyze.completed',
        status: 'skipped',
        reason: outcome.kind === 'gone' ? 'run no longer exists' : outcome.reason,
        ...rateLimitFields(rateLimit),
      },
      'analysis skipped: GitHub rate-limited it, and the run changed meanwhile',
    );
  }
}
