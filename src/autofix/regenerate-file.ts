import { and, eq, sql } from 'drizzle-orm';
import { clearedApplyWait } from '../apply/apply-wait.ts';
import type { Database, Transaction } from '../db/client.ts';
import {
  findings,
  patchFiles,
  patchRequestFindings,
  patchRequests,
  prRuns,
  type PatchRequestStatus,
  type RunStatus,
} from '../db/schema/index.ts';
import {
  findInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import { applyQueue } from '../jobs/apply.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { previewQueue, type PreviewJobData } from '../jobs/preview.ts';
import { findPullRequestClosed, type PullRequestClosedError } from '../runs/pull-request-closed.ts';
import { resultToKeep } from './kept-result.ts';
import { findSelectionOverAllowance, type PreviewPayment, type SelectionOverAllowance } from './preview-budget.ts';
import { isUuid } from '../runs/visible-runs.ts';

export type RegenerateFileResult =
  | {
      ok: true;
      path: string;
      generation: number;
      /** The apply job that waited for a GitHub rate limit or another apply and was cancelled, or null. */
      cancelledApplyJobId: string | null;
    }
  | { ok: false; reason: 'not_found' }
  | { ok: false; reason: 'busy' | 'cancelled' | 'applied'; status: PatchRequestStatus }
  | { ok: false; reason: 'findings_gone'; path: string }
  | { ok: false; reason: 'run_not_completed'; status: RunStatus }
  | { ok: false; reason: 'over_allowance'; over: SelectionOverAllowance }
  /** No provider can pay, or only a platform key that the provider rejected (see `payment`). */
  | { ok: false; reason: 'no_payer'; payment: PreviewPayment }
  | { ok: false; reason: 'installation_unavailable'; error: InstallationUnavailableError }
  | { ok: false; reason: 'pull_request_closed'; error: PullRequestClosedError };

/**
 * Queues a new preview of one file of a finished patch request. In one transaction it bumps
 * the file's generation (part of each model call's idempotency key), moves the file's ready
 * result to `keptResult`, resets the file to pending, sets the request back to running and
 * sends a preview job. runPreview then calls the model only for that file, because it skips
 * ready and failed files. When the regeneration fails, on a provider outage, bad output or a
 * stopped service, the kept result is put back with the reason in `regenerationError` (see
 * restoreKeptResults), so the user keeps the diff they reviewed.
 * Nothing changes while the request is applied, being applied or has an apply whose write
 * GitHub did not confirm. Nothing changes either when the run's installation is suspended or
 * deleted, or when its pull request is closed. The same holds when the run is no longer
 * completed (superseded by a newer commit, or queued for another analysis), or when an analysis
 * since the preview replaced the file's findings.
 * Nothing changes either when `payment` is the allowance and the file's call, estimated as for
 * "Preview fix", needs more than it has left.
 * An apply job that waits for a GitHub rate limit or for another apply is cancelled, with a
 * message in the request's `applyError`, because it would apply the new text, which the user
 * has not seen.
 */
export async function regeneratePatchFile(
  db: Database,
  boss: PgBoss,
  input: { userId: string; patchRequestId: string; fileId: string; payment: PreviewPayment },
): Promise<RegenerateFileResult> {
  if (!isUuid(input.patchRequestId) || !isUuid(input.fileId)) return { ok: false, reason: 'not_found' };
  return db.transaction(async (tx) => {
    const [owned] = await tx
      .select({ runId: prRuns.id, installationId: prRuns.installationId })
      .from(patchRequests)
      .innerJoin(prRuns, eq(prRuns.id, patchRequests.runId))
      .where(and(eq(patchRequests.id, input.patchRequestId), eq(patchRequests.userId, input.userId)));
    if (!owned) return { ok: false, reason: 'not_found' };
    // A suspend or uninstall locks the installation before the work it cancels, and a close
    // locks the runs before their patch requests. This locks in the same order. The results are
    // returned only after the request's own state is checked, because a cancelled or applied
    // preview stays so after the installation is active or the pull request open again.
    const unavailable = await findInstallationUnavailable(tx, owned.installationId);
    const closed = await findPullRequestClosed(tx, owned.runId);
    // Read under the share lock that findPullRequestClosed took, so a push that supersedes the
    // run waits for this transaction and then cancels the request it set running.
    const [run] = await tx.select({ status: prRuns.status }).from(prRuns).where(eq(prRuns.id, owned.runId));

    // The row lock keeps two clicks from queueing two jobs for the same request.
    const [request] = await tx
      .select({
        id: patchRequests.id,
        status: patchRequests.status,
        applyStartedAt: patchRequests.applyStartedAt,
        appliedAt: patchRequests.appliedAt,
        applyUnconfirmedAt: patchRequests.applyUnconfirmedAt,
        applyJobId: patchRequests.applyJobId,
        applyClaimWaitUntil: patchRequests.applyClaimWaitUntil,
      })
      .from(patchRequests)
      .where(and(eq(patchRequests.id, input.patchRequestId), eq(patchRequests.userId, input.userId)))
      .for('update');
    if (!request) return { ok: false, reason: 'not_found' };
    const [file] = await tx
      .select()
      .from(patchFiles)
      .where(and(eq(patchFiles.id, input.fileId), eq(patchFiles.patchRequestId, request.id)));
    if (!file) return { ok: false, reason: 'not_found' };
    // A job still working on the request could pick the file up a second time.
    if (request.status === 'queued' || request.status === 'running') {
      return { ok: false, reason: 'busy', status: request.status };
    }
    if (request.status === 'cancelled') return { ok: false, reason: 'cancelled', status: request.status };
    // Applied text must stay what the preview shows, and an apply in progress reads the files.
    // So must the text of an apply whose write GitHub did not confirm, which the next apply
    // records when it finds that write.
    if (request.appliedAt || request.applyStartedAt || request.applyUnconfirmedAt) {
      return { ok: false, reason: 'applied', status: request.status };
    }
    if (unavailable) return { ok: false, reason: 'installation_unavailable', error: unavailable };
    if (closed) return { ok: false, reason: 'pull_request_closed', error: closed };
    // The preview job cancels the request of a superseded run after the file was reset, and a
    // run analyzed again replaces the findings that the file's prompt needs.
    if (run && run.status !== 'completed') {
      return { ok: false, reason: 'run_not_completed', status: run.status };
    }
    const selected = await tx
      .select({ findingId: patchRequestFindings.findingId })
      .from(patchRequestFindings)
      .innerJoin(findings, eq(findings.id, patchRequestFindings.findingId))
      .where(and(eq(patchRequestFindings.patchRequestId, request.id), eq(findings.path, file.path)));
    if (selected.length === 0) return { ok: false, reason: 'findings_gone', path: file.path };
    // The regenerated file could only fail, so it keeps its result.
    const payment = input.payment;
    if (payment.kind === 'no_provider' || (payment.kind === 'allowance' && payment.platformKeyRejection)) {
      return { ok: false, reason: 'no_payer', payment };
    }
    const over = await findSelectionOverAllowance(tx, input.payment, {
      runId: owned.runId,
      findingIds: selected.map((row) => row.findingId),
    });
    if (over) return { ok: false, reason: 'over_allowance', over };

    await tx
      .update(patchFiles)
      .set({
        generation: sql`${patchFiles.generation} + 1`,
        restoredGeneration: null,
        keptResult: resultToKeep(file),
        regenerationError: null,
        status: 'pending',
        error: null,
        baseBlobSha: null,
        originalText: null,
        proposedText: null,
        diff: null,
        provider: null,
        model: null,
        totalTokens: 0,
        keyNotice: null,
      })
      .where(eq(patchFiles.id, file.id));
    await tx
      .update(patchRequests)
      .set({
        status: 'running',
        error: null,
        completedAt: null,
        // A job that failed after it stored a rate limit wait can leave one, and the new job waits for none.
        previewRateLimitedUntil: null,
        filesDone: sql`(SELECT count(*) FROM ${patchFiles} WHERE ${patchFiles.patchRequestId} = ${request.id} AND ${patchFiles.status} IN ('ready', 'failed'))`,
      })
      .where(eq(patchRequests.id, request.id));
    const cancelledApplyJobId = await cancelWaitingApply(tx, boss, request, file.path);
    const data: PreviewJobData = { patchRequestId: request.id };
    const previewJobId = await boss.send(previewQueue, data, { db: transactionDb(tx) });
    // The newest job replaces the first one's id, so cancelling the request reaches this job.
    await tx.update(patchRequests).set({ previewJobId }).where(eq(patchRequests.id, request.id));
    return { ok: true, path: file.path, generation: file.generation + 1, cancelledApplyJobId };
  });
}

/**
 * Cancels the patch request's apply job `applyJobId` unless it has ended, and stores why in
 * the request's `applyError`. Returns the job's id when it was cancelled, otherwise null. The
 * request's row must be locked and unclaimed, so the job has not started writing to GitHub. A
 * job that started meanwhile fails its claim, because the request is no longer ready.
 */
async function cancelWaitingApply(
  tx: Transaction,
  boss: PgBoss,
  request: { id: string; applyJobId: string | null; applyClaimWaitUntil: Date | null },
  path: string,
): Promise<string | null> {
  const { applyJobId } = request;
  if (applyJobId === null) return null;
  const [pending] = await tx.execute<{ id: string }>(sql`
    SELECT id FROM pgboss.job WHERE name = ${applyQueue} AND id = ${applyJobId} AND state < 'completed'`);
  if (!pending) return null;
  await boss.cancel(applyQueue, applyJobId, { db: transactionDb(tx) });
  const waitedFor = request.applyClaimWaitUntil ? 'another apply of this preview' : 'a GitHub rate limit';
  await tx
    .update(patchRequests)
    .set({
      applyError:
        `The apply that waited for ${waitedFor} was cancelled, because ${path} was ` +
        'regenerated. Apply again once the preview is ready.',
      ...clearedApplyWait,
    })
    .where(eq(patchRequests.id, request.id));
  return applyJobId;
}
