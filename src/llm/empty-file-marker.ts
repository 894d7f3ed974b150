import { createHash } from 'node:crypto';

/** Marker that a fix response consists of when the corrected file is empty. */
export const plainEmptyFileMarker = '<empty-file/>';

/**
 * Returns the marker that the model returns, in place of the file, when the corrected version
 * of `original` is empty. A response cannot be empty, because the providers' clients reject
 * an empty or white-space-only response as failed.
 *
 * The marker is `<empty-file/>`, unless `original` contains `<empty-file`, since the model
 * could then return that text as part of a file that is not empty. Such a file gets
 * `<empty-file-<16 hex digits>/>`, the digits being the start of the file's SHA-256. That marker
 * is derived from the file alone, so the prompt and the parser compute the same one, and a file
 * would have to contain the start of its own hash to contain it.
 */
export function emptyFileMarker(original: string): string {
  if (!original.includes('<empty-file')) return plainEmptyFileMarker;
  const digest = createHash('sha256').update(original, 'utf8').digest('hex').slice(0, 16);
  return `<empty-file-${digest}/>`;
}
