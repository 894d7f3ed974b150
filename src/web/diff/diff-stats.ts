import { parseUnifiedDiff } from './parse-unified-diff.ts';

/** Line counts of a file's diff, and whether it rewrites most of the file. */
export interface DiffStats {
  added: number;
  deleted: number;
  /** Lines of the original file. */
  originalLines: number;
  /** The diff removes at least `largeRewriteShare` of a file of `largeRewriteMinLines` or more. */
  largeRewrite: boolean;
}

/** Share of the original lines whose removal marks a rewrite for the reviewer. */
export const largeRewriteShare = 0.5;

/** Shorter files are left out, because a small fix may replace half of a five-line file. */
export const largeRewriteMinLines = 10;

/** Counts a text's lines. A final line break does not start another line. */
export function countLines(text: string): number {
  if (text === '') return 0;
  const breaks = text.split('\n').length - 1;
  return text.endsWith('\n') ? breaks : breaks + 1;
}

/**
 * Counts the added and removed lines of a unified diff, and marks a diff that removes so much
 * of the original that the reviewer should read it as a rewrite rather than a fix.
 */
export function diffStats(diff: string, original: string): DiffStats {
  let added = 0;
  let deleted = 0;
  for (const row of parseUnifiedDiff(diff)) {
    if (row.kind === 'add') added++;
    else if (row.kind === 'delete') deleted++;
  }
  const originalLines = countLines(original);
  const largeRewrite =
    originalLines >= largeRewriteMinLines && deleted >= originalLines * largeRewriteShare;
  return { added, deleted, originalLines, largeRewrite };
}
