import type { Config } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import type { PgBoss } from './boss.ts';
import { analyzeQueue, analyzeQueueOptions, handleAnalyzeJob, type AnalyzeJobData } from './analyze.ts';
import { handlePreviewJob, previewQueue, previewQueueOptions, type PreviewJobData } from './preview.ts';
import { handleReportJob, reportQueue, reportQueueOptions, type ReportJobData } from './report.ts';
import { rolloverPeriods, rolloverPeriodsCron, rolloverPeriodsQueue } from './rollover-periods.ts';
import {
  handleSweepReservations,
  sweepReservationsCron,
  sweepReservationsQueue,
} from './sweep-reservations.ts';

/**
 * Creates every queue and applies the configured preview timeout; safe to call from each
 * process at start.
 */
export async function createQueues(boss: PgBoss, config?: Config): Promise<void> {
  await boss.createQueue(analyzeQueue, { name: analyzeQueue, ...analyzeQueueOptions });
  await boss.createQueue(previewQueue, { name: previewQueue, ...previewQueueOptions });
  await boss.createQueue(reportQueue, { name: reportQueue, ...reportQueueOptions });
  if (config) {
    // createQueue leaves an existing queue as it is, so the configured timeout is set apart.
    await boss.updateQueue(previewQueue, {
      name: previewQueue,
      ...previewQueueOptions,
      expireInSeconds: config.PREVIEW_JOB_TIMEOUT_SECONDS,
    });
  }
  for (const name of [sweepReservationsQueue, rolloverPeriodsQueue]) {
    await boss.createQueue(name, { name, policy: 'singleton', retryLimit: 0 });
  }
}

/** Starts the workers of this process and the schedules. */
export async function startWorkers(context: AppContext): Promise<void> {
  const { boss } = context;
  const polling = { pollingIntervalSeconds: 1, batchSize: 1, includeMetadata: true as const };

  await boss.work<AnalyzeJobData>(analyzeQueue, polling, async ([job]) => {
    if (job) await handleAnalyzeJob(context, job);
  });
  await boss.work<ReportJobData>(reportQueue, polling, async ([job]) => {
    if (job) await handleReportJob(context, job);
  });
  // Two preview workers, so one long preview does not hold up the next.
  for (let worker = 0; worker < 2; worker++) {
    await boss.work<PreviewJobData>(previewQueue, polling, async ([job]) => {
      if (job) await handlePreviewJob(context, job);
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
}
