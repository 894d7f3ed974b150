import { eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { patchRequests, prRuns, type RunStatus } from '../db/schema/index.ts';
import type { FixPressNotice } from './fix-press-notice.ts';

/** The pg-boss job that publishes a notice. */
export interface NoticeJob {
  queue: string;
  id: string;
}

/** The run as the notice job read it before its GitHub requests. */
export interface NoticeRunState {
  status: RunStatus;
  prClosedAt: Date | null;
  analyzeJobId: string | null;
}

/**
 * Statuses that a run gets from the events that cancel the notices of earlier presses: a newer
 * commit (`superseded`), a close before the analysis completed (`cancelled`) and a base change
 * or a push back to the commit (`queued`). The run's own analysis moving on (`analyzing`,
 * `completed`, `failed`) leaves a notice true.
 */
const staleStatuses: readonly RunStatus[] = ['queued', 'superseded', 'cancelled'];

/**
 * Reason not to write a notice as it is. With `redirect`, the pressed check run is no longer
 * the run's, because the run was analyzed again and its report posted `newerCheckRunId`. A
 * notice that points there may be written instead. A skip names the newer check run too when
 * the run has one.
 */
export type StaleNotice =
  | { kind: 'skip'; reason: string; newerCheckRunId: number | null }
  | { kind: 'redirect'; reason: string; newerCheckRunId: number };

/**
 * Reads the run, the patch request that the notice names and the notice's job in one
 * statement, and returns why the notice must not be written, or null when it may. The reasons
 * follow `cancelFixPressNoticesOfRuns`, which cannot stop a running pg-boss 10 handler. The
 * run may be missing, or superseded, cancelled or queued again since `read`. The pull request
 * may be closed since `read`, and the check run may no longer be the run's. The patch request
 * may be cancelled or missing, and the notice job may no longer be active. A notice of the kind `earlier_analysis`
 * stays true through those changes, so only a missing run and its job count for it.
 */
export async function findStaleNoticeReason(
  db: Database,
  input: {
    runId: string;
    checkRunId: number;
    notice: FixPressNotice;
    job?: NoticeJob;
    /**
     * Set when the notice goes on a check run that the run's failed report did not store. The
     * run must then still name no check run, store the report's error and be in the same
     * analysis as in `read`.
     */
    reportFailed?: boolean;
  },
  read: NoticeRunState,
): Promise<StaleNotice | null> {
  const { notice, job } = input;
  const patchRequestId =
    notice.kind === 'queued' || notice.kind === 'in_progress' ? notice.patchRequestId : null;
  const [current] = await db
    .select({
      status: prRuns.status,
      error: prRuns.error,
      checkRunId: prRuns.checkRunId,
      reportError: prRuns.reportError,
      analyzeJobId: prRuns.analyzeJobId,
      prClosedAt: prRuns.prClosedAt,
      requestStatus: patchRequestId
        ? sql<string | null>`(SELECT ${patchRequests.status} FROM ${patchRequests}
            WHERE ${patchRequests.id} = ${patchRequestId})`
        : sql<null>`NULL`,
      jobState: job
        ? sql<string | null>`(SELECT state::text FROM pgboss.job
            WHERE name = ${job.queue} AND id = ${job.id})`
        : sql<null>`NULL`,
    })
    .from(prRuns)
    .where(eq(prRuns.id, input.runId));
  if (!current) return skip('the run no longer exists');

  // A job that is not active was cancelled, or pg-boss expired it and a retry writes instead.
  const jobReason =
    job && current.jobState !== 'active'
      ? `notice job ${job.id} is ${current.jobState ?? 'gone'}`
      : null;
  const unstoredOfFailedReport =
    input.reportFailed === true &&
    current.checkRunId === null &&
    current.reportError !== null &&
    current.analyzeJobId === read.analyzeJobId;
  if (notice.kind !== 'earlier_analysis') {
    if (current.checkRunId !== input.checkRunId && !unstoredOfFailedReport) {
      const reason = `check run ${input.checkRunId} is no longer the run's`;
      // The report of the run's next analysis clears the check run and then posts a new one.
      if (current.checkRunId === null) return skip(reason);
      const newerCheckRunId = current.checkRunId;
      const pointed = `${reason}, whose newest check run is ${newerCheckRunId}`;
      if (jobReason !== null) return skip(`${pointed}, and ${jobReason}`, newerCheckRunId);
      return { kind: 'redirect', reason: pointed, newerCheckRunId };
    }
    if (current.status !== read.status && staleStatuses.includes(current.status)) {
      const status = `the run is ${current.status}`;
      return skip(current.error ? `${status}: ${current.error}` : status);
    }
    if (read.prClosedAt === null && current.prClosedAt !== null) {
      return skip('the pull request was closed');
    }
    if (patchRequestId && current.requestStatus === null) {
      return skip(`patch request ${patchRequestId} no longer exists`);
    }
    if (patchRequestId && current.requestStatus === 'cancelled') {
      return skip(`patch request ${patchRequestId} is cancelled`);
    }
  }
  return jobReason === null ? null : skip(jobReason);
}

function skip(reason: string, newerCheckRunId: number | null = null): StaleNotice {
  return { kind: 'skip', reason, newerCheckRunId };
}
