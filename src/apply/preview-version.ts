import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * The version of a preview as a user saw it: one entry `FILE_ID:GENERATION:DIFF_HASH` per file
 * that Apply would write, joined by commas in the order of the file ids. GENERATION is the
 * generation whose model call produced the file's result (see `resultGeneration`), and
 * DIFF_HASH is the first 16 hex digits of the SHA-256 of the file's diff. A preview with no
 * such file has the empty string as its version. The preview page's Apply form and
 * `GET /api/patch-requests/:id` send it, and an apply that receives it writes nothing unless
 * the files still match it.
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
   * `changed`: the file is ready with another generation or diff. `added`: the file is ready
   * now and was not then. `removed`: the file was ready then and is not now.
   */
  change: 'changed' | 'added' | 'removed';
}

const entryPattern = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(0|[1-9][0-9]{0,9}):([0-9a-f]{16})$/;

/** Maximum length of a version that the API accepts, enough for about 15,000 files. */
const maxVersionLength = 1_000_000;

/**
 * Schema of a `previewVersion` field: entries as `previewVersion` builds them. The empty version
 * of a preview without a ready file is rejected too. Such a preview has nothing to apply, and an
 * empty field from a client that lost the value would otherwise get 409 for changed files.
 */
export const previewVersionSchema = z
  .string()
  .max(maxVersionLength)
  .refine((value) => value.split(',').every((entry) => entryPattern.test(entry)), {
    // describeIssue in src/web/validation.ts puts this after "expected", so it is a noun phrase.
    message:
      'one FILE_ID:GENERATION:DIFF_HASH entry per ready file, joined by commas, as GET ' +
      '/api/patch-requests/:id returns them',
  })
  .describe('the previewVersion that GET /api/patch-requests/:id returns');

/** Returns whether Apply writes the file: it is ready and has both texts. */
export function isApplicableFile(file: VersionedFile): boolean {
  return file.status === 'ready' && file.originalText !== null && file.proposedText !== null;
}

/**
 * Returns the generation whose model call produced the file's result. A failed regeneration
 * puts the earlier result back, texts and all, and this returns that result's generation
 * again, so an Apply form that shows the earlier diff stays valid and writes exactly the text
 * it shows. The file's `generation` stays raised, because model calls' idempotency keys and
 * the checks that stop a late attempt from storing its outcome use it, so it must not repeat.
 * A ready result is never replaced at its own generation, so the generation and the diff name
 * one result.
 */
export function resultGeneration(file: Pick<VersionedFile, 'generation' | 'restoredGeneration'>): number {
  return file.restoredGeneration ?? file.generation;
}

function fileEntry(file: VersionedFile): string {
  const hash = createHash('sha256').update(file.diff ?? '').digest('hex').slice(0, 16);
  return `${file.id}:${resultGeneration(file)}:${hash}`;
}

/** Builds the version of a preview from its files, ready or not. */
export function previewVersion(files: readonly VersionedFile[]): PreviewVersion {
  return files
    .filter(isApplicableFile)
    .map(fileEntry)
    .sort()
    .join(',');
}

/**
 * Compares the version `seen` with the preview's files now, ready or not, and returns the files
 * that differ, by path. An empty list means that Apply writes what the user saw.
 */
export function findPreviewChanges(seen: PreviewVersion, files: readonly VersionedFile[]): PreviewFileChange[] {
  const seenEntries = new Map(
    (seen === '' ? [] : seen.split(',')).map((entry) => [entry.slice(0, entry.indexOf(':')), entry]),
  );
  const currentEntries = new Map(files.filter(isApplicableFile).map((file) => [file.id, fileEntry(file)]));
  const pathOf = new Map(files.map((file) => [file.id, file.path]));
  const changes: PreviewFileChange[] = [];
  for (const [id, entry] of currentEntries) {
    const seenEntry = seenEntries.get(id);
    if (seenEntry === undefined) changes.push({ id, path: pathOf.get(id)!, change: 'added' });
    else if (seenEntry !== entry) changes.push({ id, path: pathOf.get(id)!, change: 'changed' });
  }
  for (const id of seenEntries.keys()) {
    if (!currentEntries.has(id)) changes.push({ id, path: pathOf.get(id) ?? null, change: 'removed' });
  }
  return changes.sort((left, right) => (left.path ?? left.id).localeCompare(right.path ?? right.id));
}

const changeWords: Record<PreviewFileChange['change'], string> = {
  changed: 'changed',
  added: 'became ready',
  removed: 'is no longer ready',
};

/** Builds the message of an apply rejected because the preview changed, naming each file. */
export function describePreviewChanges(changes: readonly PreviewFileChange[]): string {
  const listed = changes.map((change) => `${change.path ?? `unknown file ${change.id}`} ${changeWords[change.change]}`);
  return (
    `The preview changed since you opened it (${listed.join('; ')}); reload it and review it ` +
    'again before you apply.'
  );
}
