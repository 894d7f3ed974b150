import { z } from 'zod';
import { quoteValue } from '../text/quote-value.ts';

/** Rejects `.` and `..`, quoting the value, which is at most 80 characters of JSON. */
function dotSegmentError(part: string) {
  return (issue: { input: unknown }) =>
    `${quoteValue(issue.input, 80)} is invalid: ${part} must not be "." or "..", which GitHub ` +
    'does not allow as an account or repository name';
}

/**
 * Schema of a GitHub login (user, organisation or bot account). GitHub allows at most 39
 * characters and bot logins add `[bot]`, so 100 leaves room for any login GitHub sends. The
 * limit keeps the value far below the size that PostgreSQL's btree index on `users.login`
 * accepts (about 2,700 bytes), so an oversized value gets a 400 instead of failing the insert.
 */
export const githubLogin = z
  .string()
  .max(100)
  .refine((login) => !isDotSegment(login), { error: dotSegmentError('a login') });

/**
 * Returns whether `name` is `.` or `..`. GitHub allows neither as a login or repository name,
 * and a request path such as `/repos/{owner}/{repo}/pulls` that contains one resolves to
 * another API path, which would be sent with the installation's token.
 */
export function isDotSegment(name: string): boolean {
  return name === '.' || name === '..';
}

/**
 * Schema of a repository's OWNER/NAME. GitHub allows 100 characters in a repository name, so
 * 200 leaves room for any full name it sends, far below what the index on `pr_runs.repository`
 * accepts.
 */
export const repositoryFullName = z
  .string()
  .max(200)
  .regex(/^[^/\s]+\/[^/\s]+$/)
  .refine((fullName) => !fullName.split('/').some(isDotSegment), {
    error: dotSegmentError('OWNER and NAME'),
  });

/**
 * Maximum UTF-8 bytes of a branch name in a webhook payload. GitHub rejects a push of a ref
 * longer than 255 bytes ("GH005: Sorry, refs longer than 255 bytes are not allowed."), so a
 * branch name, which omits `refs/heads/`, has at most 244 bytes. Outcome texts and patch
 * request errors quote branch names, so the limit also bounds them.
 * NOTE: 1,024 is a margin, not a documented limit. Git sets none, and branches that GitHub
 * stored before it enforced 255 bytes may be longer.
 */
export const maxBranchNameBytes = 1024;

/** Schema of a branch name, such as `main`, in a webhook payload. */
export const branchName = z
  .string()
  .refine((name) => Buffer.byteLength(name, 'utf8') <= maxBranchNameBytes, {
    message:
      `must be at most ${maxBranchNameBytes} bytes of UTF-8, because GitHub rejects refs ` +
      'longer than 255 bytes',
  });
