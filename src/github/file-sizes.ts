import type { Octokit } from '@octokit/rest';

/**
 * Reads the sizes in bytes of the files at a commit from its recursive git tree, in one
 * request, and returns those of `paths` that the tree lists. GitHub cuts a recursive tree at
 * 100,000 entries or 7 MB and sets `truncated` ("Get a tree" in the GitHub REST docs), so a
 * path past the cut has no size.
 */
export async function readFileSizes(
  octokit: Octokit,
  target: { owner: string; repo: string; ref: string },
  paths: ReadonlySet<string>,
): Promise<{ sizes: Map<string, number>; truncated: boolean }> {
  const { data } = await octokit.rest.git.getTree({
    owner: target.owner,
    repo: target.repo,
    tree_sha: target.ref,
    recursive: 'true',
  });
  const sizes = new Map<string, number>();
  for (const entry of data.tree) {
    if (entry.type !== 'blob' || entry.path === undefined || entry.size === undefined) continue;
    if (paths.has(entry.path)) sizes.set(entry.path, entry.size);
  }
  return { sizes, truncated: data.truncated };
}
