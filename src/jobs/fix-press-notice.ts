import type PgBoss from 'pg-boss';
import { z } from 'zod';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import { githubId } from '../events/github-id.ts';
import {
  asInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import { fixPressNotice } from '../report/fix-press-notice.ts';
import { publishFixPressNotice } from '../report/publish-fix-press-notice.ts';

export const fixPressNoticeQueue = 'fix-press-notice';

export const fixPressNoticeJobData = z.object({
  runId: z.uuid(),
  checkRunId: githubId,
  pressedAt: z.number().int().nonnegative(),
  sender: z.string().nullable(),
  notice: fixPressNotice,
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
 * suspended or uninstalled installation end the job at once, because retries cannot succeed.
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
    const outcome = await publishFixPressNotice(context, data, logger);
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
      await recordInstallationUnavailable(context.db, unavailable);
      logger.warn(
        {
          event: 'job.fix_press_notice.stopped',
          installationId: unavailable.installationId,
          reason: unavailable.reason,
        },
        'fix press notice stopped: the installation is unavailable',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    logger.error(
      { event: 'job.fix_press_notice.failed', err: error, attempt: job.retryCount, finalAttempt },
      'fix press notice failed',
    );
    throw error;
  }
}
