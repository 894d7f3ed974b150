import { and, asc, eq } from 'drizzle-orm';
import {
  previewVersion,
  resultGeneration,
  type PreviewVersion,
  type VersionedFile,
} from '../apply/preview-version.ts';
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

/**
 * Returns the generation of the result that the API and the preview page show for the file
 * (its diff, or its error when it failed), or null while the file is pending or running. A
 * regeneration clears the diff and sets the earlier result apart until it ends, and neither
 * shows that result meanwhile.
 */
export function shownResultGeneration(
  file: Pick<VersionedFile, 'generation' | 'restoredGeneration'> & { status: PatchFileStatus },
): number | null {
  if (file.status === 'pending' || file.status === 'running') return null;
  return resultGeneration(file);
}

/**
 * Builds the preview version that the API and the Apply form show, from the files whose shown
 * status is `ready`. A cancelled preview gets the empty string, because Apply rejects it, even
 * when a model call stored one of its files ready before or after the cancel.
 */
export function shownPreviewVersion(
  requestStatus: PatchRequestStatus,
  files: readonly (VersionedFile & { status: PatchFileStatus })[],
): PreviewVersion {
  return previewVersion(files.filter((file) => shownFileStatus(requestStatus, file.status) === 'ready'));
}

/** A preview's token total, split into the tokens of its files' results and the rest. */
export interface PreviewTokens {
  /** Every model call of the preview that a provider reported usage for. */
  total: number;
  /** The sum of the files' tokens: the calls that produced each file's current result. */
  files: number;
  /**
   * The calls whose results no file shows. These are the earlier results of regenerated files
   * while the regeneration runs, and for good once it stores a new result. They are also the
   * results of failed regenerations, results that an overlapping attempt of the preview job
   * finished after another attempt stored the file, and failed results of an attempt that a
   * service stop ended.
   */
  discarded: number;
}

/**
 * Splits the request's token total into its files' sum and the discarded rest. The total is
 * only ever added to, while a regeneration resets its file's tokens, a failed one puts back
 * tokens that the total already counts, and a late outcome is not stored, so the rest is not
 * negative. It is clamped to 0 in case a row was edited by hand.
 */
export function splitPreviewTokens(
  request: { totalTokens: number },
  files: readonly { totalTokens: number }[],
): PreviewTokens {
  const filesTokens = files.reduce((sum, file) => sum + file.totalTokens, 0);
  return {
    total: request.totalTokens,
    files: filesTokens,
    discarded: Math.max(request.totalTokens - filesTokens, 0),
  };
}

/** Lists a patch request's files by path. */
export async function listPatchFiles(db: Database, patchRequestId: string) {
  return db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .orderBy(asc(patchFiles.path));
}
