import { z } from 'zod';

/**
 * Schema of a GitHub login (user, organisation or bot account). GitHub allows at most 39
 * characters and bot logins add `[bot]`, so 100 leaves room for any login GitHub sends. The
 * limit keeps the value far below the size that PostgreSQL's btree index on `users.login`
 * accepts (about 2,700 bytes), so an oversized value gets a 400 instead of failing the insert.
 */
export const githubLogin = z.string().max(100);

/**
 * Schema of a repository's OWNER/NAME. GitHub allows 100 characters in a repository name, so
 * 200 leaves room for any full name it sends, far below what the index on `pr_runs.repository`
 * accepts.
 */
export const repositoryFullName = z
  .string()
  .max(200)
  .regex(/^[^/\s]+\/[^/\s]+$/);

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
