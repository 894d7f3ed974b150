import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import { gitObjectSha, parseGitHubResponse } from './github-response.ts';

/**
 * The fields of GitHub's git tree that TreeReader and its callers read (schema `git-tree` in
 * @octokit/openapi-types 29, which marks `size` optional because only blobs have one).
 */
const gitTreeSchema = z.object({
  tree: z.array(
    z.object({
      path: z.string(),
      mode: z.string(),
      type: z.string(),
      sha: gitObjectSha('git object'),
      size: z.number().optional(),
    }),
  ),
});
type TreeEntries = z.infer<typeof gitTreeSchema>['tree'];
export type TreeEntry = TreeEntries[number];

/** Raised when a path needs a directory read past the reader's `maxReads`. */
export class TreeReadLimitError extends Error {
  override name = 'TreeReadLimitError';
}

/**
 * Finds entries of a commit's tree by path, reading one directory level per request. A
 * recursive listing takes one request but returns every file of the repository, and GitHub cuts
 * it at 100,000 entries or 7 MB. Reading only the directories on the paths keeps the responses
 * small on large repositories. Paths that share a directory share its request. A response
 * that lacks a field of the entries raises UnexpectedGitHubAnswerError.
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
      const response = await this.octokit.rest.git.getTree({ ...this.repository, tree_sha: treeSha });
      entries = parseGitHubResponse(gitTreeSchema, 'GET', response).tree;
      this.cache.set(treeSha, entries);
    }
    return entries;
  }
}
