import { and, eq, inArray } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { findings, patchRequestFindings, patchRequests, prRuns } from '../db/schema/index.ts';
import {
  findInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { previewQueue, type PreviewJobData } from '../jobs/preview.ts';
import { findPullRequestClosed, type PullRequestClosedError } from '../runs/pull-request-closed.ts';

export type CreatePatchRequestResult =
  | { ok: true; id: string }
  | { ok: false; reason: 'unknown_findings'; unknownFindingIds: string[] }
  | { ok: false; reason: 'installation_unavailable'; error: InstallationUnavailableError }
  | { ok: false; reason: 'pull_request_closed'; error: PullRequestClosedError };

/**
 * Creates a patch request for findings of one run and queues its preview job in the same
 * transaction. Nothing is created when a finding id does not belong to the run, when the run's
 * installation is suspended or deleted, or when its pull request is closed. The installation's
 * and the run's rows stay locked FOR SHARE until the transaction ends. A suspend or close is
 * therefore either committed first and seen here, or it waits for this transaction and then
 * cancels the new request. Inside a caller's transaction it runs as a savepoint of that
 * transaction.
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

    const known = await tx
      .select({ id: findings.id })
      .from(findings)
      .where(and(eq(findings.runId, input.runId), inArray(findings.id, findingIds)));
    const knownIds = new Set(known.map((row) => row.id));
    const unknownFindingIds = findingIds.filter((id) => !knownIds.has(id));
    if (unknownFindingIds.length > 0) {
      return { ok: false, reason: 'unknown_findings', unknownFindingIds };
    }

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
    return { ok: true, id };
  });
}
