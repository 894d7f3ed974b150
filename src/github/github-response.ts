import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import { stripNulDeep } from '../text/strip-nul.ts';

/**
 * Raised when GitHub returned a 2xx response that lacks or mistypes a field that Fixwright
 * reads, such as a commit without its tree, or a proxy's HTML page in place of a pull request.
 * `problem` lists the invalid fields.
 */
export class UnexpectedGitHubAnswerError extends Error {
  override name = 'UnexpectedGitHubAnswerError';

  constructor(
    readonly method: string,
    readonly path: string,
    /** The problem with the response, without the request, which callers name themselves. */
    readonly problem: string,
    /** The response's HTTP status. */
    readonly status = 200,
  ) {
    super(problem);
  }
}

/** Returns the decoded path of a request URL, or the URL itself when it cannot be parsed. */
export function requestPath(url: string): string {
  return URL.canParse(url) ? decodePath(new URL(url).pathname) : url;
}

/** Decodes `heads%2Ffeature` to `heads/feature` for messages, keeping a path it cannot decode. */
export function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/**
 * Matches the sha of a git object of type `kind` in a SHA-1 repository: 40 lowercase hex digits.
 * NOTE: @octokit/openapi-types 29 lists SHA-256 repositories too, whose 64-digit shas fail this.
 */
export function gitObjectSha(kind: 'commit' | 'tree' | 'blob' | 'git object') {
  return z.string().regex(/^[0-9a-f]{40}$/, `expected a ${kind} sha of 40 lowercase hex digits`);
}

/**
 * Returns the body of `response`, GitHub's 2xx response to a `method` request, with NUL
 * removed from its strings and checked against `schema`. Octokit returns whatever body a 2xx response has, such as a proxy's HTML page as a
 * string, so a schema lists the fields that the caller reads. Throws UnexpectedGitHubAnswerError,
 * which names the request and each missing or invalid field, when the body does not match.
 */
export function parseGitHubResponse<Schema extends z.ZodType>(
  schema: Schema,
  method: string,
  response: { status: number; url: string; data: unknown },
): z.output<Schema> {
  // PostgreSQL text cannot store NUL, so one in a stored field such as a branch name or title
  // would fail the job on every retry. Webhook payloads lose theirs the same way.
  return checkGitHubResponse(schema, method, { ...response, data: stripNulDeep(response.data) });
}

/**
 * Returns `response.data` parsed with `schema`, NUL characters kept, or raises
 * UnexpectedGitHubAnswerError as parseGitHubResponse does.
 */
function checkGitHubResponse<Schema extends z.ZodType>(
  schema: Schema,
  method: string,
  response: { status: number; url: string; data: unknown },
): z.output<Schema> {
  const parsed = schema.safeParse(response.data);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map(
    (issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`,
  );
  throw new UnexpectedGitHubAnswerError(
    method,
    requestPath(response.url),
    problems.join('; '),
    response.status,
  );
}

/**
 * Describes an invalid response as `GitHub returned an invalid response (status 200) to GET
 * /path: problem.`, for the messages that Fixwright stores. Callers add the next step.
 */
export function describeInvalidResponse(error: UnexpectedGitHubAnswerError): string {
  return (
    `GitHub returned an invalid response (status ${error.status}) to ${error.method} ` +
    `${error.path}: ${error.problem}.`
  );
}

/** Names the likely cause of an invalid response, for the messages that Fixwright stores. */
export const failingProxyHint =
  'GitHub, or a proxy between this server and GITHUB_API_URL, may be failing.';

/** The items of one page of a GitHub list, and whether the Link header names a next page. */
export interface CheckedPage<Item> {
  items: Item[];
  hasNextPage: boolean;
  /** URL of the next page from the Link header, or undefined on the last page. */
  nextPageUrl?: string;
}

/**
 * Returns the items of `response`, one page of a GitHub list, checked against `itemSchema`
 * (see parseGitHubResponse). A page is an array of items, or with `itemsField` an object whose
 * field of that name is the array, as `check_runs` in a list of check runs.
 */
function parseCheckedPage<Item extends z.ZodType>(
  response: { status: number; url: string; data: unknown; headers: Record<string, unknown> },
  itemSchema: Item,
  itemsField: string | undefined,
): CheckedPage<z.output<Item>> {
  const itemsSchema = z.array(itemSchema);
  const pageSchema =
    itemsField === undefined
      ? itemsSchema
      : z.object({ [itemsField]: itemsSchema }).transform((page) => page[itemsField]!);
  // NUL is kept, so that the analysis can name a listed file whose name has one.
  const items = checkGitHubResponse(pageSchema, 'GET', response) as z.output<Item>[];
  const link = typeof response.headers.link === 'string' ? response.headers.link : '';
  const nextPageUrl = /<([^<>]+)>;\s*rel="next"/.exec(link)?.[1];
  return nextPageUrl === undefined
    ? { items, hasNextPage: false }
    : { items, hasNextPage: true, nextPageUrl };
}

/**
 * Requests one page of a GitHub list, such as `page: 2` with `per_page: 100` in `parameters`,
 * and returns its items checked against `itemSchema` (see parseCheckedPage). Callers that
 * continue a listing in a later job keep the page number, which this request names, rather
 * than the Link header's URL.
 */
export async function readCheckedPage<Item extends z.ZodType>(
  octokit: Octokit,
  route: `GET ${string}`,
  parameters: Record<string, unknown>,
  itemSchema: Item,
  options: { itemsField?: string } = {},
): Promise<CheckedPage<z.output<Item>>> {
  const response = await octokit.request(route, parameters);
  // Listed pull requests are queued as job data, which pg-boss stores as jsonb without NUL.
  const data = stripNulDeep(response.data);
  return parseCheckedPage({ ...response, data }, itemSchema, options.itemsField);
}

/**
 * Requests `route` and then each page that the Link header names as `rel="next"`, as
 * `octokit.paginate` does, and yields each page's items checked against `itemSchema` (see
 * parseCheckedPage). `octokit.paginate` is not used because it raises a TypeError for a page
 * whose body is a string, and reads an empty body as a page without items.
 */
export async function* readCheckedPages<Item extends z.ZodType>(
  octokit: Octokit,
  route: `GET ${string}`,
  parameters: Record<string, unknown>,
  itemSchema: Item,
  options: { itemsField?: string } = {},
): AsyncGenerator<{ items: z.output<Item>[]; hasNextPage: boolean }> {
  let response = await octokit.request(route, parameters);
  for (;;) {
    const { items, nextPageUrl } = parseCheckedPage(response, itemSchema, options.itemsField);
    yield { items, hasNextPage: nextPageUrl !== undefined };
    if (nextPageUrl === undefined) return;
    response = await octokit.request({ method: 'GET', url: nextPageUrl });
  }
}
