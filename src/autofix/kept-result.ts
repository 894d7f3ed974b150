import { and, inArray, isNotNull, sql, type SQL } from 'drizzle-orm';
import { isApplicableFile, resultGeneration } from '../apply/preview-version.ts';
import type { Database, Transaction } from '../db/client.ts';
import { patchFiles, type KeptPatchFileResult } from '../db/schema/index.ts';

type PatchFile = typeof patchFiles.$inferSelect;

/**
 * Returns the result that a regeneration of `file` keeps until it stores its own: the file's
 * ready result, or null when the file has none that Apply would write.
 */
export function resultToKeep(file: PatchFile): KeptPatchFileResult | null {
  if (!isApplicableFile(file)) return null;
  return {
    generation: resultGeneration(file),
    baseBlobSha: file.baseBlobSha,
    originalText: file.originalText!,
    proposedText: file.proposedText!,
    diff: file.diff,
    provider: file.provider,
    model: file.model,
    totalTokens: file.totalTokens,
    keyNotice: file.keyNotice,
  };
}

/** The regeneration error of a file whose preview was cancelled before the file was done. */
export const cancelledRegenerationError =
  'The preview was cancelled before the regeneration stored a result.';

/** Builds the SQL that reads a field of the row's `keptResult` as text. */
function keptField(name: keyof KeptPatchFileResult): SQL {
  return sql`${patchFiles.keptResult}->>${name}`;
}

/**
 * Builds the column values that put a file's kept result back in place of the failed
 * regeneration, with `regenerationError` as the reason. Its tokens come back with it, so the
 * failed calls' tokens count as discarded in the request's total.
 */
export function restoredResultColumns(regenerationError: string) {
  return {
    status: 'ready' as const,
    error: null,
    baseBlobSha: keptField('baseBlobSha'),
    originalText: keptField('originalText'),
    proposedText: keptField('proposedText'),
    diff: keptField('diff'),
    provider: keptField('provider'),
    model: keptField('model'),
    totalTokens: sql`(${keptField('totalTokens')})::bigint`,
    keyNotice: keptField('keyNotice'),
    restoredGeneration: sql`(${keptField('generation')})::integer`,
    keptResult: null,
    regenerationError,
  };
}

/**
 * Puts back the kept results of the files of `patchRequestIds` that are still pending or running,
 * with `regenerationError` as the reason. Callers hold the requests' row locks. Returns the ids of
 * the files put back.
 */
export async function restoreKeptResults(
  db: Database | Transaction,
  patchRequestIds: string[],
  regenerationError: string,
): Promise<string[]> {
  if (patchRequestIds.length === 0) return [];
  const restored = await db
    .update(patchFiles)
    .set(restoredResultColumns(regenerationError))
    .where(
      and(
        inArray(patchFiles.patchRequestId, patchRequestIds),
        inArray(patchFiles.status, ['pending', 'running']),
        isNotNull(patchFiles.keptResult),
      ),
    )
    .returning({ id: patchFiles.id });
  return restored.map((file) => file.id);
}
