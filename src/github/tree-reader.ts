import type { Octokit } from '@octokit/rest';

type TreeEntries = Awaited<ReturnType<Octokit['rest']['git']['getTree']>>['data']['tree'];
export type TreeEntry = TreeEntries[number];

/** Raised when a path needs a directory read past the reader's `maxReads`. */
export class TreeReadLimitError extends Error {
  override name = 'TreeReadLimitError';
}

/**
 * Finds entries of a commit's tree by path, reading one directory level per request. A
 * recursive listing takes one request but returns every file of the repository, and GitHub cuts
 * it at 100,000 entries or 7 MB. Reading only the directories on the paths keeps the responses
 * small on large repositories. Paths that share a directory share its request.
 */
export class TreeReader {
  private readonly cache = new Map<string, TreeEntries>();
  /** `getTree` requests made so far. */
  reads = 0;

  constructor(
    private readonly octokit: Octokit,
    private readonly repository: { owner: string; repo: string },
    /** A tree sha, or a commit sha, which GitHub resolves to the commit's tree. */
    private readonly rootSha: string,
    /** `getTree` requests allowed in all; a path that needs one more raises TreeReadLimitError. */
    private readonly maxReads = Number.POSITIVE_INFINITY,
  ) {}

  /** Returns the entry at `path`, or undefined when it or one of its directories is missing. */
  async find(path: string): Promise<TreeEntry | undefined> {
    const names = path.split('/');
    let treeSha = this.rootSha;
    for (const [index, name] of names.entries()) {
      const entry = (await this.list(treeSha)).find((candidate) => candidate.path === name);
      if (!entry?.sha) return undefined;
      if (index === names.length - 1) return entry;
      if (entry.type !== 'tree') return undefined;
      treeSha = entry.sha;
    }
    return undefined;
  }

  private async list(treeSha: string): Promise<TreeEntries> {
    let entries = this.cache.get(treeSha);
    if (!entries) {
      if (this.reads >= this.maxReads) {
        throw new TreeReadLimitError(
          `Reading tree ${treeSha} would pass the limit of ${this.maxReads} tree reads.`,
        );
      }
      this.reads++;
      const { data } = await this.octokit.rest.git.getTree({ ...this.repository, tree_sha: treeSha });
      entries = data.tree;
      this.cache.set(treeSha, entries);
    }
    return entries;
  }
}
