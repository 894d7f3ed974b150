import { and, asc, desc, eq } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { installations, patchFiles, patchRequests, prRuns } from '../db/schema/index.ts';
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
