/** Request, response and route types of the fake GitHub REST API, and route pattern matching. */

/** One request as the fake received it. `headers` includes `authorization` for assertions. */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  /** Parsed JSON for JSON requests, the raw text otherwise, `undefined` when empty. */
  body: unknown;
  /** Arrival time in milliseconds since the epoch, for checking waits between retries. */
  receivedAt: number;
}

export interface FakeResponse {
  status: number;
  headers?: Record<string, string>;
  /** Serialized as JSON unless it is a string or Buffer, and omitted when `undefined`. */
  body?: unknown;
  /** Closes the connection without a response, as when a proxy or the network drops it. */
  dropConnection?: boolean;
  /**
   * Sends the headers at once and then the body one byte every `trickleMs` milliseconds, as
   * over a link or proxy that barely moves, until the body ends or the client disconnects.
   */
  trickleMs?: number;
}

/** Credential that a route requires: the app's JWT, an installation token, or nothing. */
export type RouteAuth = 'app' | 'installation' | 'none';

/** Identity proven by the request's `authorization` header. */
export type Credential =
  | { kind: 'app' }
  | { kind: 'installation'; installationId: number; token: string }
  | { kind: 'none' };

export interface RouteContext<State> {
  request: RecordedRequest;
  /** Path parameters, already percent-decoded. */
  params: Record<string, string>;
  url: URL;
  credential: Credential;
  state: State;
}

export interface Route<State> {
  method: string;
  /**
   * Path pattern: `:name` matches one segment, a final `/*name` matches the rest of the path
   * (possibly empty), e.g. `/repos/:owner/:repo/contents/*path`.
   */
  pattern: string;
  auth: RouteAuth;
  handle(context: RouteContext<State>): FakeResponse | Promise<FakeResponse>;
}

/** Error that a handler throws to respond with GitHub's JSON error body. */
export class FakeGitHubError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly documentationUrl = 'https://docs.github.com/rest',
  ) {
    super(message);
    this.name = 'FakeGitHubError';
  }
}

/** GitHub's error body, e.g. `{ message: 'Not Found', documentation_url, status: '404' }`. */
export function errorBody(status: number, message: string, documentationUrl: string) {
  return { message, documentation_url: documentationUrl, status: String(status) };
}

export interface CompiledPattern {
  regex: RegExp;
  names: string[];
}

export function compilePattern(pattern: string): CompiledPattern {
  const names: string[] = [];
  let source = '';
  for (const segment of pattern.split('/').slice(1)) {
    if (segment.startsWith(':')) {
      names.push(segment.slice(1));
      source += '/([^/]+)';
    } else if (segment.startsWith('*')) {
      names.push(segment.slice(1));
      source += '(?:/(.*))?';
    } else {
      source += '/' + segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return { regex: new RegExp(`^${source}/?$`), names };
}

/** Matches `pathname` against a compiled pattern and returns the decoded parameters. */
export function matchPattern(
  compiled: CompiledPattern,
  pathname: string,
): Record<string, string> | null {
  const match = compiled.regex.exec(pathname);
  if (!match) {
    return null;
  }
  const params: Record<string, string> = {};
  compiled.names.forEach((name, index) => {
    params[name] = decodeURIComponent(match[index + 1] ?? '');
  });
  return params;
}
