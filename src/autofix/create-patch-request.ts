import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import {
  findings,
  patchRequestFindings,
  patchRequests,
  prRuns,
  type RunStatus,
} from '../db/schema/index.ts';
import {
  findInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { previewQueue, type PreviewJobData } from '../jobs/preview.ts';
import { findPullRequestClosed, type PullRequestClosedError } from '../runs/pull-request-closed.ts';

export type CreatePatchRequestResult =
  /** `created` is false when an active patch request for the same findings was returned. */
  | { ok: true; id: string; created: boolean }
  | { ok: false; reason: 'unknown_findings'; unknownFindingIds: string[] }
  | { ok: false; reason: 'installation_unavailable'; error: InstallationUnavailableError }
  | { ok: false; reason: 'pull_request_closed'; error: PullRequestClosedError }
  /** The run was superseded, queued again, failed or cancelled after the caller checked it. */
  | { ok: false; reason: 'run_not_completed'; status: RunStatus };

/**
 * Takes the transaction-scoped advisory lock that serializes the creation of patch requests
 * for one run, so that two requests sent at once cannot both miss the other's patch request.
 * The key keeps the name of the lock that the "Fix with AI" handler took first, so processes of
 * the older version still exclude the newer ones during an upgrade.
 */
export async function lockRunPatchRequests(tx: Transaction, runId: string): Promise<void> {
  const key = `fixwright:fix-press:${runId}`;
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`);
}

/** Lists the ids of the user's queued and running patch requests for the run, oldest first. */
export async function listActivePatchRequestIds(
  db: Database | Transaction,
  input: { runId: string; userId: string },
): Promise<string[]> {
  const rows = await db
    .select({ id: patchRequests.id })
    .from(patchRequests)
    .where(
      and(
        eq(patchRequests.runId, input.runId),
        eq(patchRequests.userId, input.userId),
        inArray(patchRequests.status, ['queued', 'running']),
      ),
    )
    .orderBy(asc(patchRequests.createdAt), asc(patchRequests.id));
  return rows.map((row) => row.id);
}

/**
 * Returns the id of the user's oldest queued or running patch request for the run whose
 * findings are exactly `findingIds` (in any order, duplicates ignored), or null. A finished
 * preview with a file being regenerated is running again, so it counts. Without
 * lockRunPatchRequests held, a patch request that another transaction is creating is missed.
 */
export async function findActivePatchRequest(
  db: Database | Transaction,
  input: { runId: string; userId: string; findingIds: readonly string[] },
): Promise<string | null> {
  const requested = new Set(input.findingIds);
  const active = await listActivePatchRequestIds(db, input);
  if (active.length === 0) return null;

  const rows = await db
    .select({
      patchRequestId: patchRequestFindings.patchRequestId,
      findingId: patchRequestFindings.findingId,
    })
    .from(patchRequestFindings)
    .where(inArray(patchRequestFindings.patchRequestId, active));
  const selected = new Map<string, Set<string>>();
  for (const row of rows) {
    const ids = selected.get(row.patchRequestId) ?? new Set<string>();
    ids.add(row.findingId);
    selected.set(row.patchRequestId, ids);
  }
  const match = active.find((id) => {
    const ids = selected.get(id);
    return ids?.size === requested.size && [...requested].every((findingId) => ids.has(findingId));
  });
  return match ?? null;
}

/**
 * Creates a patch request for findings of one run and queues its preview job in the same
 * transaction. When the user already has a queued or running patch request for the run with
 * exactly these findings, returns that one with `created: false` instead, so a double submit
 * neither runs nor charges the preview twice. lockRunPatchRequests makes that check race-free.
 * Nothing is created when a finding id does not belong to the run, when the run's installation
 * is suspended or deleted, when its pull request is closed, or when the run is no longer
 * completed. The installation's and the run's rows stay locked FOR SHARE until the transaction
 * ends. A suspend, close or push that supersedes the run is therefore either committed first
 * and seen here, or it waits for this transaction and then cancels the new request. Inside a caller's transaction it runs as a savepoint of that transaction.
 */
export async function createPatchRequest(
  db: Database | Transaction,
  boss: PgBoss,
  input: { runId: string; userId: string; findingIds: string[] },
): Promise<CreatePatchRequestResult> {
  const findingIds = [...new Set(input.findingIds)];
  return db.transaction(async (tx) => {
    const [run] = await tx
      .select({ installationId: prRuns.installationId })
      .from(prRuns)
      .where(eq(prRuns.id, input.runId));
    const unavailable = run ? await findInstallationUnavailable(tx, run.installationId) : null;
    if (unavailable) return { ok: false, reason: 'installation_unavailable', error: unavailable };
    const closed = run ? await findPullRequestClosed(tx, input.runId) : null;
    if (closed) return { ok: false, reason: 'pull_request_closed', error: closed };
    // Read under the share lock that findPullRequestClosed took, so a push that superseded the
    // run after the caller's check is seen here instead of by the preview job, which would
    // cancel the new request.
    const [locked] = await tx
      .select({ status: prRuns.status })
      .from(prRuns)
      .where(eq(prRuns.id, input.runId));
    if (locked && locked.status !== 'completed') {
      return { ok: false, reason: 'run_not_completed', status: locked.status };
    }

    const known = await tx
      .select({ id: findings.id })
      .from(findings)
      .where(and(eq(findings.runId, input.runId), inArray(findings.id, findingIds)));
    const knownIds = new Set(known.map((row) => row.id));
    const unknownFindingIds = findingIds.filter((id) => !knownIds.has(id));
    if (unknownFindingIds.length > 0) {
      return { ok: false, reason: 'unknown_findings', unknownFindingIds };
    }

    await lockRunPatchRequests(tx, input.runId);
    const active = await findActivePatchRequest(tx, { ...input, findingIds });
    if (active) return { ok: true, id: active, created: false };

    const [request] = await tx
      .insert(patchRequests)
      .values({ runId: input.runId, userId: input.userId })
      .returning({ id: patchRequests.id });
    const id = request!.id;
    await tx
      .insert(patchRequestFindings)
      .values(findingIds.map((findingId) => ({ patchRequestId: id, findingId })));

    const data: PreviewJobData = { patchRequestId: id };
    const jobId = await boss.send(previewQueue, data, { db: transactionDb(tx) });
    await tx.update(patchRequests).set({ previewJobId: jobId }).where(eq(patchRequests.id, id));
    return { ok: true, id, created: true };
  });
}
