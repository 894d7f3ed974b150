import { RequestError } from '@octokit/request-error';
import { describe, expect, it } from 'vitest';
import { asGitHubRateLimit } from '../../src/github/rate-limit.ts';

const now = Date.UTC(2026, 11, 5, 9, 0);

/** Builds the error that Octokit raises for a GitHub response with `status` and `headers`. */
function responseError(status: number, message: string, headers: Record<string, string> = {}) {
  return new RequestError(message, status, {
    request: { method: 'POST', url: 'https://api.github.com/repos/o/r/check-runs', headers: {} },
    response: { status, url: 'https://api.github.com/repos/o/r/check-runs', headers, data: { message } },
  });
}

const secondaryMessage = 'You have exceeded a secondary rate limit. Please wait a few minutes.';
const primaryHeaders = { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now / 1000 + 1200) };

describe('asGitHubRateLimit', () => {
  it('waits the seconds of retry-after', () => {
    const error = responseError(403, secondaryMessage, { 'retry-after': '90' });
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 90_000 });
  });

  it('waits past the primary reset', () => {
    const error = responseError(403, 'API rate limit exceeded for installation.', primaryHeaders);
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'primary', liftsAt: now + 1_201_000 });
  });

  it('reads a 429 like a 403', () => {
    const error = responseError(429, 'API rate limit exceeded for installation.', primaryHeaders);
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'primary', liftsAt: now + 1_201_000 });
  });

  it('waits a minute for a bare secondary limit', () => {
    const error = responseError(403, secondaryMessage);
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 60_000 });
  });

  it('waits a minute when retry-after is not positive', () => {
    for (const retryAfter of ['0', '-30']) {
      const error = responseError(403, secondaryMessage, { 'retry-after': retryAfter });
      expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 60_000 });
    }
  });

  it('waits a minute after a past reset', () => {
    const headers = { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now / 1000 - 100) };
    const error = responseError(403, 'API rate limit exceeded for installation.', headers);
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'primary', liftsAt: now + 60_000 });
  });

  it('ignores a retry-after that is not a number', () => {
    const error = responseError(403, secondaryMessage, { 'retry-after': 'soon' });
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 60_000 });
  });

  it('caps a wait past the latest date', () => {
    const retryAfter = responseError(403, secondaryMessage, { 'retry-after': '99999999999999' });
    const reset = responseError(403, 'API rate limit exceeded for installation.', {
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': '1e20',
    });
    for (const error of [retryAfter, reset]) {
      const limit = asGitHubRateLimit(error, now);
      expect(limit).not.toBeNull();
      expect(limit!.liftsAt).toBe(8.64e15);
      expect(new Date(limit!.liftsAt).toISOString()).toBe('+275760-09-13T00:00:00.000Z');
    }
  });

  it('waits a minute for a bare 429', () => {
    const error = responseError(429, 'Too Many Requests');
    expect(asGitHubRateLimit(error, now)).toEqual({ kind: 'secondary', liftsAt: now + 60_000 });
  });

  it('ignores other errors', () => {
    expect(asGitHubRateLimit(responseError(403, 'Resource not accessible by integration'), now)).toBeNull();
    expect(asGitHubRateLimit(responseError(404, 'Not Found', primaryHeaders), now)).toBeNull();
    expect(asGitHubRateLimit(new Error('socket hang up'), now)).toBeNull();
  });
});
