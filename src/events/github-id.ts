import { z } from 'zod';

/**
 * Schema of a GitHub database id (installation, repository, account, check run): a positive
 * integer up to 2^53 - 1, so that a bigint column and a JavaScript number both store it exactly.
 */
export const githubId = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
