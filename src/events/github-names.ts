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
