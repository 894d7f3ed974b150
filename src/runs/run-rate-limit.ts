import { and, eq } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { prRuns, type RunStatus } from '../db/schema/index.ts';
import type { RateLimitedWork } from '../jobs/rate-limit-wait.ts';

type Run = typeof prRuns.$inferSelect;

/** A job of a run that waits for a GitHub rate limit to lift. */
export interface RunRateLimitWait {
  /** pg-boss queue of the waiting job: `analyze`, `report` or `fix-press-notice`. */
  queue: string;
  until: Date;
}

/**
 * Describes run `runId` as the work of job `jobId` for `queueAfterRateLimit`. The job owns the
 * run while the run has one of `statuses` and its column `jobColumn` names the job or no job.
 * The successor's id goes into that column, so whatever cancels the job's work cancels it too.
 * Without `jobColumn` (a job whose id the run does not store) the status alone counts.
 */
export function runWork(
  runId: string,
  jobId: string,
  owner: { queue: string; statuses: readonly RunStatus[]; jobColumn?: 'analyzeJobId' | 'reportJobId' },
): RateLimitedWork {
  const { queue, statuses, jobColumn } = owner;
  return {
    async findInstallation(tx) {
      const [run] = await tx
        .select({ installationId: prRuns.installationId })
        .from(prRuns)
        .where(eq(prRuns.id, runId));
      return run?.installationId ?? null;
    },
    async lockAndCheck(tx) {
      // Locks the run's row, as the transactions that analyze it again, supersede, close or
      // cancel it do, so they either come first and are seen here, or wait for this commit and
      // then cancel the new job.
      const [current] = await tx.select().from(prRuns).where(eq(prRuns.id, runId)).for('update');
      if (!current) return { kind: 'gone' };
      if (!statuses.includes(current.status)) return { kind: 'replaced', reason: `run is ${current.status}` };
      const owningJobId = jobColumn ? current[jobColumn] : null;
      if (owningJobId !== null && owningJobId !== jobId) {
        return { kind: 'replaced', reason: `${queue} job ${owningJobId} works on the run` };
      }
      return null;
    },
    async recordNext(tx: Transaction, nextJobId, until) {
      await tx
        .update(prRuns)
        .set({
          ...(jobColumn ? { [jobColumn]: nextJobId } : {}),
          rateLimitedUntil: until,
          rateLimitedJobId: nextJobId,
          rateLimitedQueue: queue,
        })
        .where(eq(prRuns.id, runId));
    },
  };
}

/** Clears the run's rate limit wait when it is job `jobId`'s, which has started. */
export async function clearRunRateLimit(db: Database, runId: string, jobId: string): Promise<void> {
  await db
    .update(prRuns)
    .set({ rateLimitedUntil: null, rateLimitedJobId: null, rateLimitedQueue: null })
    .where(and(eq(prRuns.id, runId), eq(prRuns.rateLimitedJobId, jobId)));
}

/**
 * Returns the rate limit wait to show for the run, or null. A wait is shown only while the run
 * is in the state its job works on, so a run that was cancelled, superseded or reported in
 * another way meanwhile shows none. A cancelled analyze or report job leaves the stored wait in
 * place until the run changes, which its cancellation does. Cancelling a notice job clears the
 * wait, because the run can stay completed (see cancelPendingNotices).
 */
export function runRateLimitWait(run: Run): RunRateLimitWait | null {
  const { rateLimitedUntil: until, rateLimitedQueue: queue } = run;
  if (until === null || queue === null) return null;
  const waiting =
    queue === 'analyze'
      ? run.status === 'queued' || run.status === 'analyzing'
      : queue === 'report'
        ? run.status === 'completed' && run.reportedAt === null && run.reportError === null
        : run.status === 'completed';
  return waiting ? { queue, until } : null;
}

/**
 * Builds the run page's line about a wait: the text before its time and the text after it. Once
 * the time has passed, the job only waits for a worker, and the line states that.
 */
export function describeRunRateLimitWait(
  wait: RunRateLimitWait,
  now = new Date(),
): { before: string; after: string } {
  const work =
    wait.queue === 'analyze'
      ? 'The analysis'
      : wait.queue === 'report'
        ? 'Posting the check run and summary comment'
        : 'Showing the "Fix with AI" press on the check run';
  return describeWait(work, wait.until, now);
}

/** Words the wait of `work` for a rate limit that lifts at `until`, before and after the time. */
export function describeWait(work: string, until: Date, now: Date): { before: string; after: string } {
  if (until.getTime() > now.getTime()) {
    return {
      before: `${work} waits for a GitHub rate limit on this installation until`,
      after: ', then continues by itself.',
    };
  }
  return {
    before: `${work} waited for a GitHub rate limit on this installation until`,
    after: ', and continues as soon as a worker takes its job.',
  };
}
