import { and, desc, eq, gt, sql } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { findings, prRuns } from '../db/schema/index.ts';
import { analyzeQueue, type AnalyzeJobData } from '../jobs/analyze.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { reportQueue } from '../jobs/report.ts';
import {
  cancelApplyJobsOfRuns,
  cancelFixPressNoticesOfRuns,
  cancelPatchRequestsOfRuns,
} from '../runs/cancel-run-work.ts';
import { queuedAgainValues } from '../runs/queued-again.ts';
import { supersedeOlderRuns } from '../runs/supersede-older-runs.ts';
import type { PullRequestPayload } from './pull-request.ts';
import { isSameSecond } from './pull-request-ties.ts';

/** Statuses of a run whose analysis of its queued event is under way or done. */
const activeStatuses: readonly string[] = ['queued', 'analyzing', 'completed'];

/**
 * Handles an `edited` event whose `changes.base` shows that the pull request now targets
 * another base branch. It queues the head commit's run again in place with the new base and
 * clears its findings, check run and report state. It also cancels the old analysis's analyze,
 * report and "Fix with AI" notice jobs, unfinished patch requests and waiting apply jobs. Returns the outcome, or
 * null when the head commit has no run yet, so the caller creates one as for `opened`. Call it
 * with the pull request's lock held and after the checks of the installation and of a later
 * close.
 *
 * Some edits change nothing: one of a closed pull request, one whose `changes.base.ref.from`
 * is the current base, and one older than an event that a run already records. Neither does an
 * edit with the run's time and base, which queued the run before, while that run is queued,
 * analyzing or completed. A base change whose time is in the same second as the run's event is
 * appended to `ties`.
 */
export async function handleBaseChange(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
  updatedAt: Date,
  ties: string[],
): Promise<string | null> {
  const { repository, pull_request: pullRequest } = payload;
  const target = `${repository.full_name}#${payload.number}`;
  const base = pullRequest.base;
  if (pullRequest.state === 'closed') {
    return `ignored: ${target} is closed, so its base change to ${base.ref} starts no analysis`;
  }
  const fromRef = payload.changes?.base?.ref?.from;
  if (fromRef === base.ref) return `ignored: the base branch of ${target} stays ${base.ref}`;

  const ofPullRequest = and(
    eq(prRuns.repositoryId, repository.id),
    eq(prRuns.prNumber, payload.number),
  );
  const [newer] = await tx
    .select({ id: prRuns.id, prUpdatedAt: prRuns.prUpdatedAt })
    .from(prRuns)
    .where(and(ofPullRequest, gt(prRuns.prUpdatedAt, updatedAt)))
    .orderBy(desc(prRuns.prUpdatedAt))
    .limit(1);
  if (newer) {
    return (
      `ignored: run ${newer.id} records a later event of ${target}, at ` +
      `${newer.prUpdatedAt!.toISOString()}, than this base change`
    );
  }

  // The row lock makes an analysis that completes now either commit first, so that its report
  // job is read and cancelled below, or find the new analyze job and store nothing.
  const [run] = await tx
    .select()
    .from(prRuns)
    .where(and(ofPullRequest, eq(prRuns.headSha, pullRequest.head.sha)))
    .for('update');
  if (!run) return null;
  // A redelivery, or the same payload sent again with `fixwright receive`, would otherwise
  // cancel the new analysis and the patch requests made since. A run that failed or stopped
  // runs again, as for a repeated `synchronize`.
  const sameEvent =
    run.prUpdatedAt?.getTime() === updatedAt.getTime() && run.baseRef === base.ref;
  if (sameEvent && activeStatuses.includes(run.status)) {
    return (
      `ignored: run ${run.id} was queued for this base change of ${target} to ${base.ref} ` +
      `at ${updatedAt.toISOString()}`
    );
  }

  // Another base change in the same second may have come after this one.
  if (run.prUpdatedAt && isSameSecond(run.prUpdatedAt, updatedAt) && run.baseRef !== base.ref) {
    ties.push(
      `the base change to ${base.ref} at ${updatedAt.toISOString()} replaced ${run.baseRef}, ` +
        'stored for an event of the same second',
    );
  }
  await requeueRun(tx, boss, run, payload, updatedAt);
  const from = fromRef ?? run.baseRef;
  const work = await cancelOldAnalysisWork(tx, boss, run, { target, from, to: base.ref });
  const superseded = await supersedeOlderRuns(tx, boss, {
    repositoryId: repository.id,
    prNumber: payload.number,
    runId: run.id,
    installationId: run.installationId,
    headSha: pullRequest.head.sha,
    updatedAt,
  });
  const cancelled = [
    `${work.patchRequests} patch request(s)`,
    ...(work.applyJobs > 0 ? [`${work.applyJobs} apply job(s)`] : []),
  ].join(' and ');
  const supersededNote =
    superseded.length > 0 ? `; superseded ${superseded.length} older run(s)` : '';
  return (
    `run ${run.id} queued again: the base changed from ${from} to ${base.ref}; ` +
    `cancelled ${cancelled}${supersededNote}`
  );
}

/**
 * Sets the run back to queued with the event's base and a new analyze job, and deletes its
 * findings. The check run and report state of the old analysis are cleared, so the report of
 * the new analysis creates a new check run (see checkRunExternalId).
 */
async function requeueRun(
  tx: Transaction,
  boss: PgBoss,
  run: typeof prRuns.$inferSelect,
  payload: PullRequestPayload,
  updatedAt: Date,
): Promise<void> {
  const { pull_request: pullRequest } = payload;
  const data: AnalyzeJobData = { runId: run.id };
  const analyzeJobId = await boss.send(analyzeQueue, data, { db: transactionDb(tx) });
  await tx
    .update(prRuns)
    .set({
      ...queuedAgainValues(pullRequest, updatedAt),
      prTitle: pullRequest.title.slice(0, 1000),
      analyzeJobId,
      checkRunId: null,
      checkRunAnnotations: 0,
      reportedAt: null,
      uncheckedFiles: sql`'{}'::text[]`,
      uncheckedFileReasons: [],
      unlistedFiles: 0,
      omittedFindings: 0,
    })
    .where(eq(prRuns.id, run.id));
  // Patch requests that select these findings lose them, and the new analysis stores its own.
  // "Regenerate this file" on a ready preview of the old findings then gets 409.
  await tx.delete(findings).where(eq(findings.runId, run.id));
}

/**
 * Cancels the old analysis's pending analyze, report and "Fix with AI" notice jobs, its
 * unfinished patch requests and its waiting apply jobs. Returns how many patch requests and
 * apply jobs were cancelled.
 */
async function cancelOldAnalysisWork(
  tx: Transaction,
  boss: PgBoss,
  run: typeof prRuns.$inferSelect,
  change: { target: string; from: string; to: string },
): Promise<{ patchRequests: number; applyJobs: number }> {
  const db = transactionDb(tx);
  // pg-boss 10.4 cancels only jobs before `completed`. A worker that runs one of them goes on,
  // but its analysis stores nothing (see analyzeRun) and its report skips a queued run.
  if (run.analyzeJobId) await boss.cancel(analyzeQueue, run.analyzeJobId, { db });
  if (run.reportJobId) await boss.cancel(reportQueue, run.reportJobId, { db });
  // A notice of a press on the old check run could name a patch request cancelled below.
  // Cancelling does not stop a running pg-boss 10 handler, so a notice job that already runs
  // finds the change when it reads the run again around its update (see publishFixPressNotice).
  await cancelFixPressNoticesOfRuns(tx, boss, [run.id]);

  const changed = `the base branch of ${change.target} changed from ${change.from} to ${change.to}`;
  const patchRequests = await cancelPatchRequestsOfRuns(
    tx,
    boss,
    [run.id],
    `Cancelled because ${changed}. Request the fix again once the new analysis has completed.`,
  );
  // The old findings chose what the preview fixed, so the user checks the new ones first.
  const applyJobs = await cancelApplyJobsOfRuns(
    tx,
    boss,
    [run.id],
    `The apply was cancelled because ${changed}. Check the new analysis, then apply again.`,
  );
  return { patchRequests: patchRequests.length, applyJobs };
}
