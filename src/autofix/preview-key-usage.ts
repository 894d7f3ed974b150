import { asc, eq } from 'drizzle-orm';
import { resultGeneration } from '../apply/preview-version.ts';
import type { Database } from '../db/client.ts';
import { tokenEvents, type KeySource } from '../db/schema/index.ts';

/** The payers of a preview's model calls, from its rows in the ledger. */
export interface PreviewKeyUsage {
  /** Tokens charged to the allowance, by calls on platform keys. */
  chargedTokens: number;
  /** Tokens of calls on the user's own keys, which the allowance is not charged for. */
  ownKeyTokens: number;
  /** Key source of the call that produced each file's shown result, by file id. */
  fileKeySources: Map<string, KeySource>;
}

interface ResultFile {
  id: string;
  path: string;
  provider: string | null;
  generation: number;
  restoredGeneration: number | null;
}

/**
 * Sums a preview's ledger rows by key source and finds the key source of each file's shown
 * result. A file's result comes from the newest ledger row of its path, provider and result
 * generation, whose idempotency key contains `:generation-N:` (see meterClient). Within one
 * generation a provider is called with one key only, because a preview never lists a provider
 * with both the platform key and an own key.
 */
export async function loadPreviewKeyUsage(
  db: Database,
  patchRequestId: string,
  files: readonly ResultFile[],
): Promise<PreviewKeyUsage> {
  const rows = await db
    .select({
      path: tokenEvents.path,
      provider: tokenEvents.provider,
      keySource: tokenEvents.keySource,
      chargedTokens: tokenEvents.chargedTokens,
      totalTokens: tokenEvents.totalTokens,
      idempotencyKey: tokenEvents.idempotencyKey,
    })
    .from(tokenEvents)
    .where(eq(tokenEvents.patchRequestId, patchRequestId))
    .orderBy(asc(tokenEvents.id));

  let chargedTokens = 0;
  let ownKeyTokens = 0;
  for (const row of rows) {
    if (row.keySource === 'platform') chargedTokens += row.chargedTokens;
    else ownKeyTokens += row.totalTokens;
  }

  const fileKeySources = new Map<string, KeySource>();
  for (const file of files) {
    if (file.provider === null) continue;
    const generation = `:generation-${resultGeneration(file)}:`;
    const source = rows.findLast(
      (row) => row.path === file.path && row.provider === file.provider && row.idempotencyKey.includes(generation),
    );
    if (source) fileKeySources.set(file.id, source.keySource);
  }
  return { chargedTokens, ownKeyTokens, fileKeySources };
}
