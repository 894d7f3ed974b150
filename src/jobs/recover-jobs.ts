import { sql } from 'drizzle-orm';
import { failPatchRequest } from '../autofix/preview.ts';
import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import { logNoticesStarted } from '../report/report-run.ts';
import { releaseAttemptReservations } from '../usage/allowance.ts';
import { analyzeQueue } from './analyze.ts';
import { applyQueue } from './apply.ts';
import { checkQueues, startCheckQueuedAfter } from './check-queues.ts';
import { closedApplyCheckQueue, recordUnfinishedCheck } from './closed-apply-check.ts';
import { fixPressNoticeQueue, startNoticesWaitingForReport } from './fix-press-notice-queue.ts';
import { transactionDb } from './boss.ts';
import { lockIsFree } from './job-liveness.ts';
import { previewCallAttempt, previewQueue } from './preview.ts';
import { reportQueue } from './report.ts';

export const recoverJobsQueue = 'recover-jobs';

/** Every minute, the finest step of pg-boss's cron. */
export const recoverJobsCron = '* * * * *';

/** Queues of the jobs that work on runs and previews, which `cleanUpAfter` looks at. */
const workQueues = [
  analyzeQueue,
  previewQueue,
  reportQueue,
  fixPressNoticeQueue,
  applyQueue,
  closedApplyCheckQueue,
];

/**
 * Queues whose dead jobs `recoverDeadJobs` fails. While a dead check is `active`, every later
 * check of its key defers to it (see `findRunningCheck`). Failing it sets it to `retry`, and
 * its clean-up moves up the check queued behind it, which then reads GitHub.
 */
const recoveredQueues = [...workQueues, ...checkQueues];

/** The message stored on a job, run or preview whose worker died. */
export const deadWorkerMessage =
  'the worker running it stopped (its process ended or lost its database session)';

type ActiveJob = {
  id: string;
  name: string;
  singleton_key: string | null;
  retry_count: number;
  retry_limit: number;
  data: { runId?: string; patchRequestId?: string; firstAttempt?: number } | null;
  started_on: string | Date;
};

export interface RecoveryOutcome {
  /** Jobs sent back to the queue for another attempt. */
  retried: number;
  /** Jobs that were on their last attempt, failed with their run or preview. */
  failed: number;
  /** Tokens held by the dead attempts' model calls, released now. */
  releasedTokens: number;
}

/**
 * Finds jobs whose worker is gone and hands them back to pg-boss at once. A job counts as
 * dead when it has been active for at least `minimumAgeSeconds` and no session holds its
 * liveness lock (see `JobLiveness`). Both are checked twice, `confirmDelayMs` apart, so a
 * worker whose connection is being re-established is not taken for a dead one. A dead job is
 * failed through pg-boss, which retries it if it has attempts left. Without this, a dead
 * worker's job waited for its expiry (30 minutes for previews), and a job on its last attempt
 * left its run or preview showing as running for good. A preview's holds on the allowance are
 * released too, so its retry is not refused for tokens that no running call uses.
 */
export async function recoverDeadJobs(
  context: AppContext,
  options: { minimumAgeSeconds: number; confirmDelayMs: number; signal?: AbortSignal },
): Promise<RecoveryOutcome> {
  const outcome: RecoveryOutcome = { retried: 0, failed: 0, releasedTokens: 0 };
  const suspects = await unheldActiveJobs(context.db, options.minimumAgeSeconds);
  if (suspects.length === 0) return outcome;

  // A process that stops during the pause ends the pass here, before its pool closes.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, options.confirmDelayMs);
    timer.unref();
    options.signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  if (options.signal?.aborted) return outcome;
  const suspected = new Set(suspects.map((job) => attemptKey(job)));
  // The second check and the failing of the jobs run in one transaction under a lock, so two
  // recoveries at once (one per worker process at start) do not fail a job twice.
  const dead = await context.db.transaction(async (tx) => {
    const [lock] = await tx.execute<{ taken: boolean }>(
      sql`SELECT pg_try_advisory_xact_lock(hashtextextended('fixwright:recover-jobs', 0)) AS taken`,
    );
    if (!lock?.taken) return [];
    const confirmed = (await unheldActiveJobs(tx, options.minimumAgeSeconds)).filter((job) =>
      suspected.has(attemptKey(job)),
    );
    for (const job of confirmed) {
      await context.boss.fail(
        job.name,
        job.id,
        { message: `Failed: ${deadWorkerMessage}.` },
        { db: transactionDb(tx) },
      );
    }
    return confirmed;
  });

  for (const job of dead) {
    const lastAttempt = job.retry_count >= job.retry_limit;
    if (lastAttempt) outcome.failed++;
    else outcome.retried++;
    context.logger.warn(
      {
        event: 'jobs.dead_worker',
        jobId: job.id,
        queue: job.name,
        attempt: job.retry_count,
        lastAttempt,
        startedAt: job.started_on,
      },
      lastAttempt ? 'failed a job whose worker died on its last attempt' : 'retrying a job whose worker died',
    );
    outcome.releasedTokens += await cleanUpAfter(context, job, lastAttempt, deadWorkerMessage);
  }
  return outcome;
}

/**
 * Fails the run or preview of each job that pg-boss failed on its last attempt for running past
 * its expiry, because no handler records that failure. It looks back `withinSeconds`. Running
 * it again changes nothing, because only unfinished runs and previews are updated. Returns
 * how many jobs it looked at.
 */
export async function failTimedOutWork(context: AppContext, withinSeconds: number): Promise<number> {
  const jobs = await context.db.execute<ActiveJob>(sql`
    SELECT id, name, singleton_key, retry_count, retry_limit, data, started_on FROM pgboss.job
    WHERE state = 'failed'
      AND name IN (${sql.join(workQueues.map((name) => sql`${name}`), sql`, `)})
      AND completed_on > now() - make_interval(secs => ${withinSeconds})
      AND output->'value'->>'message' = ${pgBossTimeoutMessage}
  `);
  for (const job of jobs) {
    // A handler still running after its expiry finishes the work itself. The next pass looks
    // again once its lock is free.
    if (!(await lockIsFree(context.db, job.id))) continue;
    await cleanUpAfter(context, job, true, 'the job ran past its time limit on its last attempt');
  }
  return jobs.length;
}

/** The reason stored on a run or preview whose service stopped during its job's last attempt. */
export const stoppedWorkerMessage = 'the service stopped while it ran';

/** A job whose handler was still running when this process stopped its workers. */
export interface InterruptedJob {
  id: string;
  /** The job's retry count when its handler started, which numbers the attempt. */
  attempt: number;
}

/**
 * Cleans up after jobs whose handlers still ran when this process stopped. pg-boss fails such
 * jobs when it stops and retries those with attempts left. The reservations of their model
 * calls are released here, because otherwise a retry on a small plan is rejected for tokens
 * that no call uses until they expire. After a last attempt the run or preview is failed. An
 * installation or pull request check has no holds, and the check of its key that waits for it
 * is moved up. A job that pg-boss did not fail (its stop could not reach the database) is left
 * to `recoverDeadJobs`. Returns the tokens released.
 */
export async function cleanUpInterruptedJobs(
  context: AppContext,
  interrupted: InterruptedJob[],
): Promise<number> {
  let released = 0;
  for (const { id, attempt } of interrupted) {
    const [job] = await context.db.execute<ActiveJob & { state: string }>(sql`
      SELECT id, name, singleton_key, retry_count, retry_limit, data, started_on, state FROM pgboss.job
      WHERE id = ${id} AND retry_count = ${attempt} AND state IN ('retry', 'failed')
        AND name IN (${sql.join(recoveredQueues.map((name) => sql`${name}`), sql`, `)})
    `);
    if (!job) continue;
    const lastAttempt = job.state === 'failed';
    const tokens = await cleanUpAfter(context, job, lastAttempt, stoppedWorkerMessage);
    released += tokens;
    context.logger.warn(
      { event: 'jobs.interrupted', jobId: id, queue: job.name, attempt, lastAttempt, releasedTokens: tokens },
      interruptedMessage(job.name, lastAttempt),
    );
  }
  return released;
}

/** Returns the message of the `jobs.interrupted` line of a job of `queue`. */
function interruptedMessage(queue: string, lastAttempt: boolean): string {
  if (checkQueues.includes(queue)) {
    return lastAttempt
      ? 'the service stopped during the last attempt of a check, so the stored state stays as the events left it'
      : 'the service stopped during a check, which pg-boss retries';
  }
  return lastAttempt
    ? 'the service stopped during the last attempt of a job; marked its work failed'
    : 'the service stopped during a job; released its holds for the retry';
}

/** The output pg-boss 10 stores on a job it failed for running past its expiry. */
const pgBossTimeoutMessage = 'job failed by timeout in active state';

/** Returns the job id with its attempt, so a job retried and started again between checks is not taken for dead. */
function attemptKey(job: ActiveJob): string {
  return `${job.id}/${job.retry_count}`;
}

async function unheldActiveJobs(db: Database | Transaction, minimumAgeSeconds: number): Promise<ActiveJob[]> {
  const active = await db.execute<ActiveJob>(sql`
    SELECT id, name, singleton_key, retry_count, retry_limit, data, started_on FROM pgboss.job
    WHERE state = 'active'
      AND name IN (${sql.join(recoveredQueues.map((name) => sql`${name}`), sql`, `)})
      AND started_on < now() - make_interval(secs => ${minimumAgeSeconds})
  `);
  const unheld: ActiveJob[] = [];
  for (const job of active) {
    if (await lockIsFree(db, job.id)) unheld.push(job);
  }
  return unheld;
}

/**
 * Releases a dead preview attempt's holds and, after a last attempt, fails its run with
 * `reason`, or the files of its preview not done yet (see failPatchRequest). Only unfinished
 * runs and previews whose current job is `job` change. For a check, it moves up the check of
 * its key that waits for it instead. Returns the tokens released.
 */
async function cleanUpAfter(
  context: AppContext,
  job: ActiveJob,
  lastAttempt: boolean,
  reason: string,
): Promise<number> {
  const { db } = context;
  const error = new Error(`${reason[0]!.toUpperCase()}${reason.slice(1)}.`);
  const { runId, patchRequestId } = job.data ?? {};
  let released = 0;
  // Each update checks that the run or preview still names this job. A run queued again by a
  // new delivery, or a preview with a regenerated file, belongs to a newer job, whose
  // attempts reuse this job's attempt numbers in their idempotency keys. A preview job that
  // continues after a rate limit numbers its attempts on from `firstAttempt` instead.
  if (job.name === previewQueue && patchRequestId) {
    const [request] = await db.execute<{ current: boolean }>(sql`
      SELECT preview_job_id = ${job.id} AS current FROM patch_requests WHERE id = ${patchRequestId}
    `);
    if (!request?.current) return 0;
    const attempt = previewCallAttempt(job.data, job.retry_count);
    released = await releaseAttemptReservations(db, patchRequestId, attempt);
    // Checked again under the request's lock, in case a regeneration sent a new job since.
    if (lastAttempt) await failPatchRequest(db, patchRequestId, error, { jobId: job.id });
  } else if (job.name === analyzeQueue && runId && lastAttempt) {
    await db.execute(sql`
      UPDATE pr_runs SET status = 'failed', error = ${`Analysis failed: ${error.message}`},
        completed_at = now()
      WHERE id = ${runId} AND status IN ('queued', 'analyzing') AND analyze_job_id = ${job.id}
    `);
  } else if (job.name === reportQueue && runId && lastAttempt) {
    // The notices that wait for the report end with its error, as after recordReportError.
    const noticeJobIds = await db.transaction(async (tx) => {
      const failed = await tx.execute(sql`
        UPDATE pr_runs SET report_error = ${`Posting the results to GitHub failed: ${error.message}`}
        WHERE id = ${runId} AND reported_at IS NULL AND report_error IS NULL
          AND report_job_id = ${job.id}
        RETURNING id
      `);
      return failed.length > 0 ? startNoticesWaitingForReport(tx, context.boss, runId) : [];
    });
    const logger = context.logger.child({ jobId: job.id, runId, queue: reportQueue });
    logNoticesStarted(logger, noticeJobIds, 'report_failed');
  } else if (job.name === applyQueue && patchRequestId && lastAttempt) {
    await db.execute(sql`
      UPDATE patch_requests SET apply_error = ${`Applying failed: ${error.message}`}
      WHERE id = ${patchRequestId} AND applied_at IS NULL AND apply_error IS NULL
        AND apply_job_id = ${job.id}
    `);
  } else if (job.name === closedApplyCheckQueue && patchRequestId && lastAttempt) {
    await recordUnfinishedCheck(db, patchRequestId);
  } else if (checkQueues.includes(job.name)) {
    await startCheckQueuedAfter(context, { id: job.id, name: job.name, singletonKey: job.singleton_key });
  }
  return released;
}
