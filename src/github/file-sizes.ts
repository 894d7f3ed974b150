import type { Octokit } from '@octokit/rest';
import { TreeReader, TreeReadLimitError } from './tree-reader.ts';

/** Directory reads allowed for one call of readFileSizes. */
export const maxSizeTreeReads = 50;

/**
 * Reads the sizes in bytes of `paths` at the commit `target.ref`, one directory level per
 * request. A path whose directories would take more than `maxReads` reads in all gets no size,
 * nor do the paths after it, so a pull request with findings in many directories costs at most
 * that many requests.
 */
export async function readFileSizes(
  octokit: Octokit,
  target: { owner: string; repo: string; ref: string },
  paths: ReadonlySet<string>,
  options: { maxReads?: number } = {},
): Promise<{ sizes: Map<string, number>; limited: boolean }> {
  const maxReads = options.maxReads ?? maxSizeTreeReads;
  const repository = { owner: target.owner, repo: target.repo };
  const reader = new TreeReader(octokit, repository, target.ref, maxReads);
  const sizes = new Map<string, number>();
  // Sorted, so that paths of one directory follow each other and share its reads.
  for (const path of [...paths].sort()) {
    let entry;
    try {
      entry = await reader.find(path);
    } catch (error) {
      if (error instanceof TreeReadLimitError) return { sizes, limited: true };
      throw error;
    }
    if (entry?.type === 'blob' && entry.size !== undefined) sizes.set(path, entry.size);
  }
  return { sizes, limited: false };
}
