/** A GitHub rate limit that rejected a request, and when GitHub accepts requests again. */
export interface GitHubRateLimit {
  kind: 'primary' | 'secondary';
  /** Time in milliseconds since 1970 from which the request may be sent again. */
  liftsAt: number;
}

/**
 * Seconds to wait for a rate limit that names no time in the future: a secondary limit without
 * `retry-after`, or a header whose time has passed. GitHub advises at least a minute then.
 */
const fallbackWaitSeconds = 60;

/** The latest time a JavaScript Date holds, in milliseconds since 1970. */
const latestTime = 8.64e15;

function header(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  const value = headers?.[name];
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

/**
 * Returns the rate limit that a failed Octokit request reports, or null for any other error.
 * It follows "Exceeding the rate limit" in GitHub's REST API docs ("Rate limits for the REST
 * API"), as @octokit/plugin-throttling 11.0.5 does. A 403 or 429 with `retry-after` lifts after
 * that many seconds, and one with `x-ratelimit-remaining: 0` one second after
 * `x-ratelimit-reset`. A secondary limit or a 429 that sends neither lifts after a minute. So
 * does a limit whose header names no later time, such as `retry-after: 0` or a reset that this
 * machine's clock has passed, so a job that waits for it does not start again at once. A time
 * past the latest Date is capped to it.
 */
export function asGitHubRateLimit(error: unknown, now = Date.now()): GitHubRateLimit | null {
  if (!(error instanceof Error)) return null;
  const { status, response } = error as {
    status?: unknown;
    response?: { headers?: Record<string, unknown> };
  };
  if (status !== 403 && status !== 429) return null;
  const headers = response?.headers;
  const secondary = /\bsecondary rate\b/i.test(error.message);
  const remaining = header(headers, 'x-ratelimit-remaining');
  const kind = remaining === '0' && !secondary ? 'primary' : 'secondary';

  const fallback = now + fallbackWaitSeconds * 1000;
  const lift = (liftsAt: number): GitHubRateLimit => ({
    kind,
    liftsAt: liftsAt > now ? Math.min(liftsAt, latestTime) : fallback,
  });
  const retryAfterHeader = header(headers, 'retry-after');
  const retryAfter = Number(retryAfterHeader);
  if (retryAfterHeader !== undefined && Number.isFinite(retryAfter)) {
    return lift(now + retryAfter * 1000);
  }
  const reset = Number(header(headers, 'x-ratelimit-reset'));
  if (remaining === '0' && Number.isFinite(reset)) return lift((reset + 1) * 1000);
  // A 429 is a rate limit whatever its message, while a 403 without these headers or words is
  // a permission error.
  if (secondary || status === 429) return { kind: 'secondary', liftsAt: fallback };
  return null;
}
