import type PgBoss from 'pg-boss';
import { z } from 'zod';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import { githubId } from '../events/github-id.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import type { Logger } from '../logger.ts';
import { fixPressNotice } from '../report/fix-press-notice.ts';
import { publishFixPressNotice } from '../report/publish-fix-press-notice.ts';
import { clearRunRateLimit, runWork } from '../runs/run-rate-limit.ts';
import {
  logRateLimitQueueFailure,
  queueAfterRateLimit,
  rateLimitedSince,
  rateLimitFields,
} from './rate-limit-wait.ts';

export const fixPressNoticeQueue = 'fix-press-notice';

export const fixPressNoticeJobData = z.object({
  runId: z.uuid(),
  checkRunId: githubId,
  pressedAt: z.number().int().nonnegative(),
  sender: z.string().nullable(),
  notice: fixPressNotice,
  rateLimitedSince,
});
export type FixPressNoticeJobData = z.infer<typeof fixPressNoticeJobData>;

export const fixPressNoticeQueueOptions = {
  retryLimit: 4,
  retryDelay: 10,
  retryBackoff: true,
  expireInSeconds: 5 * 60,
} satisfies Omit<PgBoss.Queue, 'name'>;

/**
 * Shows the outcome of a "Fix with AI" press on the run's check run. Missing credentials and a
 * suspended or uninstalled installation end the job at once, because retries cannot succeed. A
 * GitHub rate limit ends the job and queues the next attempt for when the limit lifts (see
 * `waitForRateLimit`).
 */
export async function handleFixPressNoticeJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<FixPressNoticeJobData>,
): Promise<void> {
  const data = fixPressNoticeJobData.parse(job.data);
  const logger = context.logger.child({
    jobId: job.id,
    runId: data.runId,
    checkRunId: data.checkRunId,
    queue: fixPressNoticeQueue,
  });
  try {
    await clearRunRateLimit(context.db, data.runId, job.id);
    const noticeJob = { queue: fixPressNoticeQueue, id: job.id };
    const outcome = await publishFixPressNotice(context, { ...data, job: noticeJob }, logger);
    logger.info(
      { event: 'job.fix_press_notice.completed', notice: data.notice.kind, ...outcome },
      'fix press notice finished',
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.warn(
        { event: 'job.fix_press_notice.not_configured', reason: error.message },
        'fix press notice stopped: not configured',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      // The notice stores nothing, so the log line carries the message that names the account.
      const recorded = await recordInstallationUnavailable(context.db, unavailable);
      logger.warn(
        {
          event: 'job.fix_press_notice.stopped',
          installationId: recorded.installationId,
          reason: recorded.reason,
          error: recorded.message,
        },
        'fix press notice stopped: the installation is unavailable',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = asGitHubRateLimit(error);
    if (rateLimit) {
      try {
        await waitForRateLimit(context, job.id, data, rateLimit, error, logger);
      } catch (queueError) {
        logRateLimitQueueFailure(logger, 'job.fix_press_notice', queueError, rateLimit, job);
        throw queueError;
      }
      return;
    }
    logger.error(
      { event: 'job.fix_press_notice.failed', err: error, attempt: job.retryCount, finalAttempt },
      'fix press notice failed',
    );
    throw error;
  }
}

/**
 * Queues a new notice job that starts when the rate limit lifts (see `queueAfterRateLimit`),
 * while the run is completed. The notice stores nothing of its own, so a limit that lifts later
 * than the maximum wait allows is only logged, and the check run keeps its earlier text.
 *
 * Writing the notice again does not show it twice: the update replaces the check run's `text`,
 * and the new job skips a notice older than the one the check run shows.
 */
async function waitForRateLimit(
  context: AppContext,
  jobId: string,
  data: FixPressNoticeJobData,
  rateLimit: GitHubRateLimit,
  error: unknown,
  logger: Logger,
): Promise<void> {
  const job = { queue: fixPressNoticeQueue, id: jobId, data, event: 'job.fix_press_notice' };
  const work = runWork(data.runId, jobId, { queue: fixPressNoticeQueue, statuses: ['completed'] });
  const outcome = await queueAfterRateLimit(context, job, rateLimit, error, logger, work);
  if (outcome.kind === 'queued' || outcome.kind === 'too_long') return;
  logger.info(
    {
      event: 'job.fix_press_notice.completed',
      status: 'skipped',
      reason:
        outcome.kind === 'gone'
          ? 'run no longer exists'
          : outcome.kind === 'unavailable'
            ? outcome.unavailable.message
            : outcome.reason,
      ...rateLimitFields(rateLimit),
    },
    'fix press notice skipped: GitHub rate-limited it, and the run changed meanwhile',
  );
}
