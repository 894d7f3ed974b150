import { eq } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { prRuns } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { Logger } from '../logger.ts';

/**
 * Minimum time between two reads of the run's row during an analysis, in ms. The analysis
 * returns to the event loop every 20 ms, and a query at each return would add one round trip
 * to the database per slice.
 */
export const runStateCheckIntervalMs = 1_000;

/**
 * Error that ends an analysis whose run no longer needs it. It is not a failure: the job
 * completes without marking the run failed and without a retry.
 */
export class AnalysisStopped extends Error {
  constructor(readonly reason: string) {
    super(`Analysis stopped: ${reason}`);
    this.name = 'AnalysisStopped';
  }
}

/**
 * Tells whether analyze job `jobId` is the run's current one. Without `jobId`, and for a run
 * that names no job, any caller is.
 */
export function isCurrentJob(
  run: { analyzeJobId: string | null },
  jobId: string | undefined,
): boolean {
  return jobId === undefined || run.analyzeJobId === null || run.analyzeJobId === jobId;
}

/**
 * Returns why analyze job `jobId` must not store findings for the run, or null when it may:
 * the run is gone, was cancelled or superseded (with the run's stored error), was completed
 * already, or a base change queued it again with another job. A run is completed already when
 * another attempt of the same job stored its findings first, as when pg-boss retries a job that
 * ran past its time limit. Storing them again would delete the findings that patch requests
 * selected meanwhile and queue a second report.
 */
export function stopReasonOf(
  run: { status: string; error: string | null; analyzeJobId: string | null } | undefined,
  jobId: string | undefined,
): string | null {
  if (!run) return 'the run no longer exists';
  if (run.status === 'cancelled' || run.status === 'superseded') {
    return run.error ? `the run is ${run.status}: ${run.error}` : `the run is ${run.status}`;
  }
  if (!isCurrentJob(run, jobId)) {
    return `the run was queued again with analyze job ${run.analyzeJobId}`;
  }
  if (run.status === 'completed') return 'another attempt of the job completed the run';
  return null;
}

/** Reads the run's row and returns why analyze job `jobId` must stop, as `stopReasonOf` does. */
export async function readStopReason(
  db: Database | Transaction,
  runId: string,
  jobId: string | undefined,
): Promise<string | null> {
  const [run] = await db
    .select({ status: prRuns.status, error: prRuns.error, analyzeJobId: prRuns.analyzeJobId })
    .from(prRuns)
    .where(eq(prRuns.id, runId));
  return stopReasonOf(run, jobId);
}

/**
 * Returns a checkpoint for `analyzeChangedFilesInTurns` that throws `AnalysisStopped` once the
 * run no longer needs analyze job `jobId`. Its first call reads the run's row, and later calls
 * read it again only when `intervalMs` have passed since the last read, as `now` measures in ms.
 * A failed read is logged as `analyze.stop_check_failed` and the analysis goes on, because the
 * transaction that stores the findings reads the run again.
 */
export function runStopCheckpoint(
  db: Database,
  target: { runId: string; jobId: string | undefined },
  logger: Logger,
  options: { intervalMs?: number; now?: () => number } = {},
): () => Promise<void> {
  const intervalMs = options.intervalMs ?? runStateCheckIntervalMs;
  const now = options.now ?? (() => performance.now());
  let lastRead: number | undefined;
  return async () => {
    if (lastRead !== undefined && now() - lastRead < intervalMs) return;
    lastRead = now();
    let reason: string | null;
    try {
      reason = await readStopReason(db, target.runId, target.jobId);
    } catch (error) {
      // Retrying the job would list and read the pull request's files from GitHub again.
      logger.warn(
        { event: 'analyze.stop_check_failed', err: toSafeError(error) },
        'reading the run to check whether the analysis must stop failed; the analysis goes on',
      );
      return;
    }
    if (reason !== null) throw new AnalysisStopped(reason);
  };
}
