import type { ApplyMode } from '../db/schema/index.ts';
import { UnexpectedGitHubAnswerError } from '../github/github-response.ts';
import { asInstallationUnavailable } from '../github/installation-unavailable.ts';
import { asGitHubRateLimit } from '../github/rate-limit.ts';
import { describeFailedRequest } from './github-rejection.ts';

/**
 * Raised when GitHub returned a server error, no response or an invalid response to a ref
 * update or to a review (`writeError`), and the read that checks whether the write took effect
 * failed too (`readError`). A later apply raises it with a null `writeError` when its read of
 * the stored unconfirmed write of an earlier apply fails. When GitHub rate-limited the read
 * after a write or reported the installation unavailable, `readError` decides how the apply
 * ends (see `applyFailureCause`).
 */
export class UnconfirmedWriteError extends Error {
  override name = 'UnconfirmedWriteError';

  constructor(
    readonly mode: ApplyMode,
    /** For mode `commit`, the commit that the ref update named. */
    readonly commitSha: string | null,
    readonly writeError: unknown,
    readonly readError: unknown,
  ) {
    const read = `the read that checks whether it took effect failed: ${describeFailedRequest(readError)}`;
    const write =
      writeError === null ? "An earlier apply's write is unconfirmed" : describeFailedRequest(writeError);
    super(`${write}, and ${read}`);
  }
}

/**
 * Returns true when GitHub may have carried out a write that failed with `error`: a server error,
 * no response (which Octokit reports as status 500) or an invalid response to a 2xx.
 */
export function mayHaveTakenEffect(error: unknown): boolean {
  if (error instanceof UnexpectedGitHubAnswerError) return true;
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' && status >= 500;
}

/**
 * Returns true when GitHub rate-limited the request that failed with `error`, or reported the
 * installation suspended or uninstalled. Such a failure of the read that checks a write ends
 * the apply as it does for any request: the apply waits for the limit or records the
 * installation.
 */
export function isRateLimitOrUnavailable(error: unknown): boolean {
  return asInstallationUnavailable(error) !== null || asGitHubRateLimit(error) !== null;
}

/**
 * Returns the error that decides how an apply that failed with `error` ends: the read error of
 * an UnconfirmedWriteError when `isRateLimitOrUnavailable` returns true for it, and `error`
 * otherwise. The caller stores the unconfirmed write of `error` in both cases.
 */
export function applyFailureCause(error: unknown): unknown {
  if (error instanceof UnconfirmedWriteError && isRateLimitOrUnavailable(error.readError)) {
    return error.readError;
  }
  return error;
}
