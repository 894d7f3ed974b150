import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * The version of a preview as a user saw it: one entry `FILE_ID:GENERATION:DIFF_HASH` per file
 * that Apply would write, joined by commas in the order of the file ids. GENERATION is the
 * generation whose model call produced the file's result (see `resultGeneration`), and
 * DIFF_HASH is the first 16 hex digits of the SHA-256 of the file's diff. A preview with no
 * such file has the empty string as its version. The preview page's Apply form and
 * `GET /api/patch-requests/:id` send it, and an apply that receives it writes nothing unless
 * the same files are ready with the same diffs (see `findPreviewChanges`).
 */
export type PreviewVersion = string;

/** A patch file with the columns that decide whether Apply writes it and what it writes. */
export interface VersionedFile {
  id: string;
  path: string;
  status: string;
  generation: number;
  restoredGeneration: number | null;
  diff: string | null;
  originalText: string | null;
  proposedText: string | null;
}

/** Change of one file between the version a user saw and the preview's files now. */
export interface PreviewFileChange {
  id: string;
  /** The file's path, or null for an id that the patch request does not have. */
  path: string | null;
  /**
   * `changed`: the file is ready with another diff. `added`: the file is ready
   * now and was not then. `removed`: the version names the file, which is not ready now.
   */
  change: 'changed' | 'added' | 'removed';
}

const entryPattern = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(0|[1-9][0-9]{0,9}):([0-9a-f]{16})$/;

/** Maximum length of a version that the API accepts, enough for about 15,000 files. */
const maxVersionLength = 1_000_000;

// describeIssue in src/web/validation.ts puts this after "expected", so it is a noun phrase.
const versionForm =
  'one FILE_ID:GENERATION:DIFF_HASH entry per ready file, joined by commas, as GET ' +
  '/api/patch-requests/:id returns them';

/** Returns the id of the file of a version entry, the part before its first colon. */
function entryFileId(entry: string): string {
  return entry.slice(0, entry.indexOf(':'));
}

/**
 * Schema of a `previewVersion` field: entries as `previewVersion` builds them, each file once.
 * The empty version of a preview without a ready file is rejected too. Such a preview has
 * nothing to apply, and an empty field from a client that lost the value would otherwise get
 * 409 for changed files. A file named twice is rejected even with equal entries, because no
 * preview has that version, and comparing only one of its entries would accept the other.
 */
export const previewVersionSchema = z
  .string()
  .max(maxVersionLength)
  .superRefine((value, context) => {
    const entries = value.split(',');
    if (!entries.every((entry) => entryPattern.test(entry))) {
      context.addIssue({ code: 'custom', message: versionForm });
      return;
    }
    const counts = new Map<string, number>();
    for (const entry of entries) counts.set(entryFileId(entry), (counts.get(entryFileId(entry)) ?? 0) + 1);
    const repeated = [...counts].find(([, count]) => count > 1);
    if (repeated) {
      const [id, count] = repeated;
      context.addIssue({ code: 'custom', message: `${versionForm}, not ${count} entries for file ${id}` });
    }
  })
  .describe('the previewVersion that GET /api/patch-requests/:id returns');

/** Returns whether Apply writes the file: it is ready and has both texts. */
export function isApplicableFile(file: VersionedFile): boolean {
  return file.status === 'ready' && file.originalText !== null && file.proposedText !== null;
}

/**
 * Returns the generation whose model call produced the file's result. A failed regeneration
 * puts the earlier result back, texts and all, and this returns that result's generation
 * again. The file's `generation` stays raised, because model calls' idempotency keys and the
 * checks that stop a late attempt from storing its outcome use it, so it must not repeat.
 */
export function resultGeneration(file: Pick<VersionedFile, 'generation' | 'restoredGeneration'>): number {
  return file.restoredGeneration ?? file.generation;
}

function diffHash(file: VersionedFile): string {
  return createHash('sha256').update(file.diff ?? '').digest('hex').slice(0, 16);
}

function fileEntry(file: VersionedFile): string {
  return `${file.id}:${resultGeneration(file)}:${diffHash(file)}`;
}

/** Returns the DIFF_HASH of a version entry, the part after its last colon. */
function entryDiffHash(entry: string): string {
  return entry.slice(entry.lastIndexOf(':') + 1);
}

/** Builds the version of a preview from its files, ready or not. */
export function previewVersion(files: readonly VersionedFile[]): PreviewVersion {
  return files
    .filter(isApplicableFile)
    .map(fileEntry)
    .sort()
    .join(',');
}

/** Returns the file ids that the version `seen` names and `files` lacks, in the order of `seen`. */
export function findUnknownFileIds(seen: PreviewVersion, files: readonly Pick<VersionedFile, 'id'>[]): string[] {
  const known = new Set(files.map((file) => file.id));
  return (seen === '' ? [] : seen.split(',')).map(entryFileId).filter((id) => !known.has(id));
}

/**
 * Compares the version `seen` with the preview's files now, ready or not, and returns the files
 * that differ, by path. An empty list means that Apply writes what the user saw.
 *
 * Each file is compared by its DIFF_HASH alone. Every generation of a file diffs the proposed
 * text against the same original, the file at the run's head commit. The diff turns that
 * original into the proposed text, so the same diff means the same text to write. A
 * regeneration whose output has the same diff therefore keeps an open Apply form valid.
 * NOTE: DIFF_HASH has 64 bits, so two different diffs of one file that collide would pass.
 */
export function findPreviewChanges(seen: PreviewVersion, files: readonly VersionedFile[]): PreviewFileChange[] {
  const seenHashes = new Map(
    (seen === '' ? [] : seen.split(',')).map((entry) => [entryFileId(entry), entryDiffHash(entry)]),
  );
  const currentHashes = new Map(files.filter(isApplicableFile).map((file) => [file.id, diffHash(file)]));
  const pathOf = new Map(files.map((file) => [file.id, file.path]));
  const changes: PreviewFileChange[] = [];
  for (const [id, hash] of currentHashes) {
    const seenHash = seenHashes.get(id);
    if (seenHash === undefined) changes.push({ id, path: pathOf.get(id)!, change: 'added' });
    else if (seenHash !== hash) changes.push({ id, path: pathOf.get(id)!, change: 'changed' });
  }
  for (const id of seenHashes.keys()) {
    if (!currentHashes.has(id)) changes.push({ id, path: pathOf.get(id) ?? null, change: 'removed' });
  }
  return changes.sort((left, right) => (left.path ?? left.id).localeCompare(right.path ?? right.id));
}

const changeWords: Record<PreviewFileChange['change'], string> = {
  changed: 'changed',
  added: 'became ready',
  removed: 'is not ready',
};

/** Builds the message of an apply rejected because the preview changed, naming each file. */
export function describePreviewChanges(changes: readonly PreviewFileChange[]): string {
  const listed = changes.map((change) => `${change.path ?? `unknown file ${change.id}`} ${changeWords[change.change]}`);
  return (
    `The preview changed since you opened it (${listed.join('; ')}); reload it and review it ` +
    'again before you apply.'
  );
}
