import { diffCommits, type DiffEntry } from './git.ts';
import type { RepositoryRecord } from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type RouteContext } from './router.ts';
import type { FakeState } from './state.ts';

/** Helpers shared by the route handlers of the fake GitHub API. */

export type Context = RouteContext<FakeState>;

export function param(context: Context, name: string): string {
  return context.params[name] ?? '';
}

export function positiveInteger(value: string | null, fallback: number): number {
  const parsed = Number(value);
  return Number.isInteger(parsed) && parsed > 0 ? parsed : fallback;
}

/** ISO 8601 without milliseconds, the format of GitHub's timestamps. */
export function githubTimestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Cuts one page out of `items` by the request's `page` and `per_page` (default 30, max 100) and
 * builds GitHub's `link` header (rel prev, next, last, first) with absolute URLs on `linkPath`.
 */
export function paginate<T>(
  items: T[],
  url: URL,
  baseUrl: string,
  linkPath: string,
): { page: T[]; link?: string } {
  const perPage = Math.min(positiveInteger(url.searchParams.get('per_page'), 30), 100);
  const page = positiveInteger(url.searchParams.get('page'), 1);
  const lastPage = Math.max(1, Math.ceil(items.length / perPage));
  const pageItems = items.slice((page - 1) * perPage, page * perPage);

  const pageUrl = (number: number) => {
    const query = new URLSearchParams(url.searchParams);
    query.set('page', String(number));
    return `<${baseUrl}${linkPath}?${query.toString()}>`;
  };
  const links: string[] = [];
  if (page > 1) {
    links.push(`${pageUrl(Math.min(page - 1, lastPage))}; rel="prev"`);
  }
  if (page < lastPage) {
    links.push(`${pageUrl(page + 1)}; rel="next"`);
    links.push(`${pageUrl(lastPage)}; rel="last"`);
  }
  if (page > 1) {
    links.push(`${pageUrl(1)}; rel="first"`);
  }
  return links.length > 0 ? { page: pageItems, link: links.join(', ') } : { page: pageItems };
}

const diffCache = new Map<string, Promise<DiffEntry[]>>();

/** Diffs two commits once. Commits are immutable, so the cached result never goes stale. */
export function cachedDiff(gitDir: string, baseSha: string, headSha: string): Promise<DiffEntry[]> {
  const key = `${gitDir}\0${baseSha}\0${headSha}`;
  let diff = diffCache.get(key);
  if (!diff) {
    diff = diffCommits(gitDir, baseSha, headSha);
    diff.catch(() => diffCache.delete(key));
    diffCache.set(key, diff);
  }
  return diff;
}

export function json(
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): FakeResponse {
  return headers ? { status, body, headers } : { status, body };
}

export function requireRepository(context: Context): RepositoryRecord {
  return context.state.requireRepository(
    context.credential,
    param(context, 'owner'),
    param(context, 'repo'),
  );
}

/**
 * Raises GitHub's 403 "Resource not accessible by integration" when the installation behind an
 * installation token lacks write access to `permission`. The fake reads the installation's
 * current permissions, so a change made with setInstallation applies to tokens issued before it.
 * NOTE: whether GitHub extends a token issued before new permissions were accepted is unverified.
 */
export function requireWritePermission(
  context: Context,
  permission: string,
  documentationUrl: string,
): void {
  const { credential } = context;
  if (credential.kind !== 'installation') return;
  const installation = context.state.installations.get(credential.installationId);
  if (installation?.permissions[permission] !== 'write') {
    throw new FakeGitHubError(403, 'Resource not accessible by integration', documentationUrl);
  }
}
