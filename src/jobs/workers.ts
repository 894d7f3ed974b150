import type { Config } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import type { Logger } from '../logger.ts';
import type { PgBoss } from './boss.ts';
import { analyzeQueue, analyzeQueueOptions, handleAnalyzeJob, type AnalyzeJobData } from './analyze.ts';
import { applyQueue, applyQueueOptions, handleApplyJob, type ApplyJobData } from './apply.ts';
import {
  closedApplyCheckQueue,
  closedApplyCheckQueueOptions,
  handleClosedApplyCheckJob,
  type ClosedApplyCheckJobData,
} from './closed-apply-check.ts';
import {
  confirmInstallationQueue,
  confirmInstallationQueueOptions,
  handleConfirmInstallationJob,
  type ConfirmInstallationJobData,
} from './confirm-installation.ts';
import { handleConfirmPullRequestJob } from './confirm-pull-request.ts';
import {
  confirmPullRequestQueue,
  confirmPullRequestQueueOptions,
  type ConfirmPullRequestJobData,
} from './confirm-pull-request-queue.ts';
import { handleResumeInstallationJob } from './resume-installation.ts';
import {
  resumeInstallationQueue,
  resumeInstallationQueueOptions,
  type ResumeInstallationJobData,
} from './resume-installation-queue.ts';
import { handlePreviewJob, previewQueue, previewQueueOptions, type PreviewJobData } from './preview.ts';
import { handleReportJob, reportQueue, reportQueueOptions, type ReportJobData } from './report.ts';
import {
  fixPressNoticeQueue,
  fixPressNoticeQueueOptions,
  handleFixPressNoticeJob,
  type FixPressNoticeJobData,
} from './fix-press-notice.ts';
import { startCheckQueuedAfter } from './check-queues.ts';
import { toJobError } from './job-error.ts';
import { JobLiveness } from './job-liveness.ts';
import { createCheckQueue } from './keyed-checks.ts';
import {
  cleanUpInterruptedJobs,
  failTimedOutWork,
  recoverDeadJobs,
  recoverJobsCron,
  recoverJobsQueue,
} from './recover-jobs.ts';
import { rolloverPeriods, rolloverPeriodsCron, rolloverPeriodsQueue } from './rollover-periods.ts';
import { handleRemaskExcerpts, remaskExcerptsCron, remaskExcerptsQueue } from './remask-excerpts.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { StartupError } from '../errors/startup-error.ts';
import {
  handleSweepReservations,
  sweepReservationsCron,
  sweepReservationsQueue,
} from './sweep-reservations.ts';

/**
 * Creates every queue and applies the configured preview timeout. Check queues that an earlier
 * version created get their new policy. Safe to call from each process at start.
 */
export async function createQueues(boss: PgBoss, config?: Config, logger?: Logger): Promise<void> {
  await boss.createQueue(analyzeQueue, { name: analyzeQueue, ...analyzeQueueOptions });
  await boss.createQueue(previewQueue, { name: previewQueue, ...previewQueueOptions });
  await boss.createQueue(reportQueue, { name: reportQueue, ...reportQueueOptions });
  await boss.createQueue(fixPressNoticeQueue, {
    name: fixPressNoticeQueue,
    ...fixPressNoticeQueueOptions,
  });
  await boss.createQueue(applyQueue, { name: applyQueue, ...applyQueueOptions });
  await boss.createQueue(closedApplyCheckQueue, {
    name: closedApplyCheckQueue,
    ...closedApplyCheckQueueOptions,
  });
  await createCheckQueue(boss, confirmInstallationQueue, confirmInstallationQueueOptions, logger);
  await createCheckQueue(boss, confirmPullRequestQueue, confirmPullRequestQueueOptions, logger);
  await createCheckQueue(boss, resumeInstallationQueue, resumeInstallationQueueOptions, logger);
  if (config) {
    // createQueue leaves an existing queue as it is, so the configured timeout is set apart.
    await boss.updateQueue(previewQueue, {
      name: previewQueue,
      ...previewQueueOptions,
      expireInSeconds: config.PREVIEW_JOB_TIMEOUT_SECONDS,
    });
  }
  // The fetch of a due job fails while a job of the same queue is active, under `singleton` as
  // under `stately` (see `checkQueuePolicy`). Each of these queues has one key (null), so the
  // failure only delays the queue's next run until the current one ends, as `singleton` means to.
  for (const name of [sweepReservationsQueue, rolloverPeriodsQueue, recoverJobsQueue, remaskExcerptsQueue]) {
    await boss.createQueue(name, { name, policy: 'singleton', retryLimit: 0 });
  }
}

/**
 * Workers of each check queue in a process. A check can wait minutes for GitHub: 30 s for each
 * request without data and its 3 retries, or up to 60 s twice in a rate limit wait. While up
 * to 3 checks wait, the fourth worker still runs the checks of other keys, and the handlers
 * keep one check per key reading GitHub (see `findRunningCheck`). A check that finds another
 * check of its key running ends at once, and the check that it queues waits without a worker
 * until that one ends (see `deferCheck`). Each idle worker polls its queue once a second.
 * NOTE: 4 is a judgment, not a measurement. When more keys' checks wait for GitHub at once,
 * the other keys' checks wait for a free worker.
 */
const checkWorkersPerQueue = 4;

/**
 * Workers of the resume queue in a process, so that the resume of an installation with many
 * repositories does not hold up that of another. Resumes follow the end of a suspension, which
 * is rare.
 */
const resumeWorkers = 2;

/** Maximum wait at close, in milliseconds, for the handlers still running to end. */
const handlerEndWaitMs = 5_000;

/** Waits until every promise has settled or `ms` have passed. */
async function waitAtMost(ms: number, promises: Promise<void>[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([Promise.all(promises), timeout]);
  clearTimeout(timer);
}

/**
 * Starts the workers of this process and the schedules. Each job runs under a liveness lock
 * taken on a connection of its own to `databaseUrl`. Call `close()` of the result after pg-boss
 * has stopped: it cleans up after the jobs whose handlers still run, then closes that connection.
 */
export async function startWorkers(
  context: AppContext,
  databaseUrl: string,
): Promise<{ close(): Promise<void> }> {
  const { boss, config, logger } = context;
  const polling = { pollingIntervalSeconds: 1, batchSize: 1, includeMetadata: true as const };
  const liveness = new JobLiveness(databaseUrl, logger);
  try {
    await liveness.connect();
  } catch (error) {
    await liveness.close().catch(() => {});
    throw new StartupError(
      `The worker could not open its job liveness connection to PostgreSQL ` +
        `(${toSafeError(error).message}): check that the server accepts another connection ` +
        `(max_connections), then start again.`,
    );
  }

  // Aborted when the workers close: previews then abort their model calls and start nothing new.
  const stopping = new AbortController();
  // Job id to the attempt its handler runs and the handler's end, for the clean-up of jobs
  // that a stop interrupts.
  const running = new Map<string, { attempt: number; ended: Promise<void> }>();
  const runJob = async (
    job: { id: string; name: string; retryCount: number; data: object },
    handle: () => Promise<void>,
    afterEnd?: () => Promise<void>,
  ) => {
    // Logged before the handler runs, so the log of a worker killed mid-job names the jobs it held.
    const { runId, patchRequestId } = job.data as { runId?: unknown; patchRequestId?: unknown };
    logger.info(
      {
        event: 'job.started',
        queue: job.name,
        jobId: job.id,
        attempt: job.retryCount,
        ...(typeof runId === 'string' ? { runId } : {}),
        ...(typeof patchRequestId === 'string' ? { patchRequestId } : {}),
      },
      'job started',
    );
    const ended = liveness.run(job.id, handle);
    running.set(job.id, { attempt: job.retryCount, ended: ended.then(() => {}, () => {}) });
    try {
      await ended;
    } catch (error) {
      // pg-boss stores what the handler throws in its job table, so it gets the logged fields
      // only. Handlers that throw the error they got from GitHub or the database rely on this.
      throw toJobError(error);
    } finally {
      running.delete(job.id);
      // During a stop, cleanUpInterruptedJobs does this for the jobs that the stop interrupted.
      if (afterEnd && !stopping.signal.aborted) await afterEnd();
    }
  };
  // Runs once the check's liveness lock is released, as startCheckQueuedBehind requires. A
  // failure leaves the waiting check to start at its latest start (see deferCheck).
  const startCheckBehind = async (job: PgBoss.JobWithMetadata<object>) => {
    await startCheckQueuedAfter(context, job).catch((error: unknown) => {
      logger.error(
        { event: 'jobs.deferred_check_move_failed', queue: job.name, jobId: job.id, err: toSafeError(error) },
        'moving up the check that waits for this check failed, so it starts at its latest start',
      );
    });
  };

  await boss.work<AnalyzeJobData>(analyzeQueue, polling, async ([job]) => {
    if (job) await runJob(job, () => handleAnalyzeJob(context, job));
  });
  await boss.work<ReportJobData>(reportQueue, polling, async ([job]) => {
    if (job) await runJob(job, () => handleReportJob(context, job));
  });
  await boss.work<FixPressNoticeJobData>(fixPressNoticeQueue, polling, async ([job]) => {
    if (job) await runJob(job, () => handleFixPressNoticeJob(context, job));
  });
  await boss.work<ApplyJobData>(applyQueue, polling, async ([job]) => {
    if (job) await runJob(job, () => handleApplyJob(context, job));
  });
  await boss.work<ClosedApplyCheckJobData>(closedApplyCheckQueue, polling, async ([job]) => {
    if (job) await runJob(job, () => handleClosedApplyCheckJob(context, job));
  });
  // pg-boss 10 runs one handler at a time per work() call, so each call adds one concurrent job.
  for (let worker = 0; worker < checkWorkersPerQueue; worker++) {
    await boss.work<ConfirmInstallationJobData>(confirmInstallationQueue, polling, async ([job]) => {
      if (!job) return;
      await runJob(job, () => handleConfirmInstallationJob(context, job), () => startCheckBehind(job));
    });
    await boss.work<ConfirmPullRequestJobData>(confirmPullRequestQueue, polling, async ([job]) => {
      if (!job) return;
      await runJob(job, () => handleConfirmPullRequestJob(context, job), () => startCheckBehind(job));
    });
  }
  for (let worker = 0; worker < resumeWorkers; worker++) {
    await boss.work<ResumeInstallationJobData>(resumeInstallationQueue, polling, async ([job]) => {
      if (!job) return;
      await runJob(job, () => handleResumeInstallationJob(context, job), () => startCheckBehind(job));
    });
  }
  // Two preview workers, so one long preview does not hold up the next.
  for (let worker = 0; worker < 2; worker++) {
    await boss.work<PreviewJobData>(previewQueue, polling, async ([job]) => {
      if (job) await runJob(job, () => handlePreviewJob(context, job, stopping.signal));
    });
  }
  // Reservations left by a worker that died are released at once, not at the next minute.
  await handleSweepReservations(context);
  await boss.work(sweepReservationsQueue, async () => handleSweepReservations(context));
  await boss.schedule(sweepReservationsQueue, sweepReservationsCron);
  await boss.work(rolloverPeriodsQueue, async () => {
    await rolloverPeriods(context);
  });
  await boss.schedule(rolloverPeriodsQueue, rolloverPeriodsCron);
  // Excerpts stored under older secret masks are masked again soon after an upgrade, not only
  // at the next scheduled run.
  await boss.work(remaskExcerptsQueue, async () => handleRemaskExcerpts(context));
  await boss.schedule(remaskExcerptsQueue, remaskExcerptsCron);
  await boss.send(remaskExcerptsQueue, {});

  const recoveries = new Set<Promise<void>>();
  const recover = async () => {
    const seconds = config.JOB_RECOVERY_SECONDS;
    const outcome = await recoverDeadJobs(context, {
      minimumAgeSeconds: seconds,
      // At least 2 s, so a worker whose connection just dropped (it retries every second)
      // has taken its locks again before the second check.
      confirmDelayMs: Math.min(10_000, Math.max(2_000, seconds * 500)),
      signal: stopping.signal,
    });
    if (stopping.signal.aborted) return;
    const timedOut = await failTimedOutWork(context, 3600);
    if (outcome.retried + outcome.failed > 0) {
      logger.info({ event: 'job.recover_jobs', ...outcome, timedOut }, 'recovered jobs of dead workers');
    }
  };
  const recoverInBackground = () => {
    const pass = recover()
      .catch((error: unknown) => {
        logger.error({ event: 'job.recover_jobs.failed', err: toSafeError(error) }, 'recovering dead jobs failed');
      })
      .finally(() => recoveries.delete(pass));
    recoveries.add(pass);
  };
  // The jobs of a worker that died before this process started are found now, and those it
  // started only just before it died once they reach the minimum age, not at the next minute.
  recoverInBackground();
  const again = setTimeout(recoverInBackground, (config.JOB_RECOVERY_SECONDS + 1) * 1000);
  again.unref();
  await boss.work(recoverJobsQueue, recover);
  await boss.schedule(recoverJobsQueue, recoverJobsCron);
  return {
    close: async () => {
      clearTimeout(again);
      stopping.abort();
      await Promise.all(recoveries);
      const interrupted = [...running].map(([id, { attempt }]) => ({ id, attempt }));
      // Handlers whose model calls were just aborted end within moments. Waiting for them
      // keeps a reservation they make meanwhile from outliving the clean-up below.
      await waitAtMost(handlerEndWaitMs, [...running.values()].map((handler) => handler.ended));
      await cleanUpInterruptedJobs(context, interrupted).catch((error: unknown) => {
        logger.error(
          { event: 'jobs.interrupted.cleanup_failed', jobIds: interrupted.map((job) => job.id), err: toSafeError(error) },
          'cleaning up after the jobs this stop interrupted failed; their holds stay until they expire',
        );
      });
      await liveness.close();
    },
  };
}
