import { describe, expect, it } from 'vitest';
import { RateLimitTooLongError } from '../../src/jobs/rate-limit-wait.ts';

const now = Date.UTC(2026, 11, 6, 4, 0);
const hour = 3600 * 1000;

describe('RateLimitTooLongError', () => {
  it.each([
    {
      liftsAt: now + 2 * hour,
      maxWaitSeconds: 3600,
      message:
        'GitHub rate-limited the installation until 2026-12-06T06:00:00.000Z, later than ' +
        'GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS (3600 s) after the first rate-limited response ' +
        'allows. Try again after that time.',
    },
    {
      liftsAt: now + 2 * hour,
      maxWaitSeconds: 0,
      message:
        'GitHub rate-limited the installation until 2026-12-06T06:00:00.000Z, and waiting for ' +
        'rate limits is turned off (GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS=0). Try again after that time.',
    },
    {
      // The latest time a Date holds, as asGitHubRateLimit caps a huge retry-after.
      liftsAt: 8.64e15,
      maxWaitSeconds: 3600,
      message:
        'GitHub rate-limited the installation until +275760-09-13T00:00:00.000Z, more than a ' +
        'year away. No GitHub rate limit lasts that long, so GitHub, or a proxy between this ' +
        'server and GITHUB_API_URL, may be failing. Try again once it responds normally.',
    },
  ])('words a lift at $liftsAt with max wait $maxWaitSeconds', ({ liftsAt, maxWaitSeconds, message }) => {
    const error = new RateLimitTooLongError({ kind: 'primary', liftsAt }, maxWaitSeconds, now);
    expect(error.message).toBe(message);
  });
});
