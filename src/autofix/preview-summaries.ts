import { and, count, desc, eq, inArray, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { patchFiles, patchRequests, tokenEvents, type PatchFileStatus } from '../db/schema/index.ts';
import { shownFileStatus, type ShownFileStatus } from './visible-patch-requests.ts';

type PatchRequest = typeof patchRequests.$inferSelect;

/** A provider and model behind the current results of some of a preview's files. */
export interface PreviewModel {
  provider: string;
  /** The model that the provider reported, null when the file stored none. */
  model: string | null;
  files: number;
}

/** A preview with the counts that the run page shows to tell it apart from the run's other previews. */
export interface PreviewSummary {
  request: PatchRequest;
  /** The number of files in each status that the preview page shows (see shownFileStatus). */
  fileStatuses: Map<ShownFileStatus, number>;
  /**
   * The providers and models of the files' current results, those with the most files first,
   * then by name.
   */
  models: PreviewModel[];
  /**
   * Tokens of the preview's model calls on the user's own keys, from the ledger. At most
   * `request.totalTokens`, which counts every call.
   */
  ownKeyTokens: number;
}

/**
 * Lists the user's `limit` newest previews of a run with a summary of each, and counts all of
 * the user's previews of the run, so that a page can show how many it left out.
 */
export async function listRunPreviewSummaries(
  db: Database,
  input: { userId: string; runId: string; limit: number },
): Promise<{ previews: PreviewSummary[]; total: number }> {
  const ofRun = and(eq(patchRequests.runId, input.runId), eq(patchRequests.userId, input.userId));
  const [counted] = await db.select({ total: count() }).from(patchRequests).where(ofRun);
  const requests = await db
    .select()
    .from(patchRequests)
    .where(ofRun)
    .orderBy(desc(patchRequests.createdAt), desc(patchRequests.id))
    .limit(input.limit);
  const ids = requests.map((request) => request.id);
  if (ids.length === 0) return { previews: [], total: counted?.total ?? 0 };

  const fileGroups = await db
    .select({
      patchRequestId: patchFiles.patchRequestId,
      status: patchFiles.status,
      provider: patchFiles.provider,
      model: patchFiles.model,
      files: count(),
    })
    .from(patchFiles)
    .where(inArray(patchFiles.patchRequestId, ids))
    .groupBy(patchFiles.patchRequestId, patchFiles.status, patchFiles.provider, patchFiles.model);
  const ownKeyRows = await db
    .select({
      patchRequestId: tokenEvents.patchRequestId,
      tokens: sql<number>`sum(${tokenEvents.totalTokens})`.mapWith(Number),
    })
    .from(tokenEvents)
    .where(and(inArray(tokenEvents.patchRequestId, ids), eq(tokenEvents.keySource, 'user')))
    .groupBy(tokenEvents.patchRequestId);
  const ownKeyTokens = new Map(ownKeyRows.map((row) => [row.patchRequestId, row.tokens]));

  const previews = requests.map((request) => {
    const groups = fileGroups.filter((group) => group.patchRequestId === request.id);
    return {
      request,
      fileStatuses: countFileStatuses(request, groups),
      models: listModels(groups),
      ownKeyTokens: Math.min(ownKeyTokens.get(request.id) ?? 0, request.totalTokens),
    };
  });
  return { previews, total: counted?.total ?? previews.length };
}

/** The number of a preview's files with one status, provider and model. */
interface FileGroup {
  status: PatchFileStatus;
  provider: string | null;
  model: string | null;
  files: number;
}

function countFileStatuses(request: PatchRequest, groups: FileGroup[]): Map<ShownFileStatus, number> {
  const statuses = new Map<ShownFileStatus, number>();
  for (const group of groups) {
    const status = shownFileStatus(request.status, group.status);
    statuses.set(status, (statuses.get(status) ?? 0) + group.files);
  }
  return statuses;
}

function listModels(groups: FileGroup[]): PreviewModel[] {
  const models = new Map<string, PreviewModel>();
  for (const group of groups) {
    if (group.provider === null) continue;
    const key = JSON.stringify([group.provider, group.model]);
    const entry = models.get(key) ?? { provider: group.provider, model: group.model, files: 0 };
    entry.files += group.files;
    models.set(key, entry);
  }
  return [...models.values()].sort(
    (left, right) =>
      right.files - left.files ||
      left.provider.localeCompare(right.provider) ||
      (left.model ?? '').localeCompare(right.model ?? ''),
  );
}
