import { redactCredentials } from '../errors/redact-credentials.ts';

/** A connection to GITHUB_API_URL that failed before any response. */
export interface ConnectionFailure {
  /** The clause for a log line, such as `the connection to GITHUB_API_URL … was refused`. */
  reason: string;
  /** The error message: the system error, the reason and what to check. */
  message: string;
}

/**
 * Describes the error of Node's fetch (undici) for a connection that failed before GitHub sent
 * a response, such as `connect ECONNREFUSED 127.0.0.1:3999`, naming GITHUB_API_URL and `apiUrl`.
 * Returns null for other errors. Fetch raises `TypeError: fetch failed` with the system error,
 * which has a `code`, as its cause.
 */
export function describeConnectionFailure(error: unknown, apiUrl: string): ConnectionFailure | null {
  if (!(error instanceof TypeError) || !(error.cause instanceof Error)) return null;
  const code = (error.cause as NodeJS.ErrnoException).code;
  if (typeof code !== 'string') return null;
  const setting = `GITHUB_API_URL ${redactCredentials(apiUrl)}`;
  let reason: string;
  if (code === 'ECONNREFUSED') {
    reason = `the connection to ${setting} was refused`;
  } else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    reason = `the host name of ${setting} was not found`;
  } else {
    reason = `the connection to ${setting} failed`;
  }
  const message =
    `${redactCredentials(error.cause.message)}: ${reason}. Check that GITHUB_API_URL is the URL ` +
    "of GitHub's REST API, such as https://api.github.com, and that this host can reach it.";
  return { reason, message };
}

/** Failures kept for the log before the oldest is dropped. Each log line removes its own. */
const maxKeptFailures = 100;

/**
 * The requests of one Octokit that got no response, by method and URL, with the reason, so
 * that its request log states why. @octokit/plugin-request-log 6 logs such a request as
 * `POST /path - 500 with id UNKNOWN`, because Octokit reports it as status 500.
 */
export class NoResponseLog {
  private readonly reasons = new Map<string, string>();

  record(method: string, url: string, reason: string): void {
    if (this.reasons.size >= maxKeptFailures) {
      const oldest = this.reasons.keys().next().value;
      if (oldest !== undefined) this.reasons.delete(oldest);
    }
    this.reasons.set(`${method} ${url}`, reason);
  }

  /**
   * Returns the request log's `message` rewritten with the reason when it reports a request to
   * `baseUrl` that got no response, or null when it reports anything else.
   */
  rewrite(message: string, baseUrl: string): string | null {
    const match = /^([A-Z]+) (\S+) - 500 with id UNKNOWN in (\d+)ms$/.exec(message);
    if (!match) return null;
    const [, method, path, milliseconds] = match;
    const key = `${method} ${baseUrl}${path}`;
    const reason = this.reasons.get(key);
    if (reason === undefined) return null;
    this.reasons.delete(key);
    return `${method} ${path} - no response after ${milliseconds}ms: ${reason}`;
  }
}
