import type { Octokit } from '@octokit/rest';
import { TreeReader } from './tree-reader.ts';

/** Directory reads allowed for one call of readFileSizes. */
export const maxSizeTreeReads = 50;

/**
 * Reads the sizes in bytes of `paths` at the commit `target.ref`, one directory level per
 * request. Once `maxReads` directories have been read, the remaining paths get no size, so a
 * pull request with findings in many directories costs at most that many requests.
 */
export async function readFileSizes(
  octokit: Octokit,
  target: { owner: string; repo: string; ref: string },
  paths: ReadonlySet<string>,
  options: { maxReads?: number } = {},
): Promise<{ sizes: Map<string, number>; limited: boolean }> {
  const maxReads = options.maxReads ?? maxSizeTreeReads;
  const reader = new TreeReader(octokit, { owner: target.owner, repo: target.repo }, target.ref);
  const sizes = new Map<string, number>();
  // Sorted, so that paths of one directory follow each other and share its reads.
  for (const path of [...paths].sort()) {
    if (reader.reads >= maxReads) return { sizes, limited: true };
    const entry = await reader.find(path);
    if (entry?.type === 'blob' && entry.size !== undefined) sizes.set(path, entry.size);
  }
  return { sizes, limited: false };
}
