import { and, asc, desc, eq } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import {
  installations,
  patchFiles,
  patchRequests,
  prRuns,
  type PatchFileStatus,
  type PatchRequestStatus,
} from '../db/schema/index.ts';
import { isUuid, runInstallationColumns } from '../runs/visible-runs.ts';

/**
 * Returns the user's patch request with its run and the run's installation, or null. Callers return 404 for both
 * "missing" and "someone else's", so other users' ids leak nothing.
 */
export async function findVisiblePatchRequest(db: Database, userId: string, id: string) {
  if (!isUuid(id)) return null;
  const [row] = await db
    .select({ request: patchRequests, run: prRuns, installation: runInstallationColumns })
    .from(patchRequests)
    .innerJoin(prRuns, eq(prRuns.id, patchRequests.runId))
    .innerJoin(installations, eq(installations.id, prRuns.installationId))
    .where(and(eq(patchRequests.id, id), eq(patchRequests.userId, userId)))
    .limit(1);
  return row ?? null;
}

/** Status of a preview's file as the dashboard and the API show it. */
export type ShownFileStatus = PatchFileStatus | 'cancelled';

/**
 * Returns the status to show for a file of a preview in `requestStatus`. A file of a cancelled
 * preview that did not fail shows `cancelled`, because such a preview can no longer be applied
 * or regenerated, even where the file's model call finished and stored the file ready.
 */
export function shownFileStatus(
  requestStatus: PatchRequestStatus,
  fileStatus: PatchFileStatus,
): ShownFileStatus {
  if (requestStatus === 'cancelled' && fileStatus !== 'failed') return 'cancelled';
  return fileStatus;
}

/** Lists a patch request's files by path. */
export async function listPatchFiles(db: Database, patchRequestId: string) {
  return db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .orderBy(asc(patchFiles.path));
}

/** Lists the user's patch requests for one run, newest first. */
export async function listRunPatchRequests(db: Database, userId: string, runId: string) {
  return db
    .select()
    .from(patchRequests)
    .where(and(eq(patchRequests.runId, runId), eq(patchRequests.userId, userId)))
    .orderBy(desc(patchRequests.createdAt))
    .limit(20);
}
