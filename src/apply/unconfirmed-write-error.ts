import type { ApplyMode } from '../db/schema/index.ts';
import { UnexpectedGitHubAnswerError } from '../github/github-response.ts';
import { describeFailedRequest } from './github-rejection.ts';

/**
 * Raised when GitHub returned a server error, no response or an invalid response to a ref
 * update or to a review (`writeError`), and the read that checks whether the write took effect
 * failed too (`readError`). A later apply raises it with a null `writeError` when its read of
 * the stored unconfirmed write of an earlier apply fails.
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
