import { UnexpectedGitHubAnswerError } from './github-response.ts';

/** Matches the RequestError that Octokit raises for a 5xx response or a request without one. */
export function isServerError(error: unknown): boolean {
  const status = (error as { status?: unknown }).status;
  return error instanceof Error && typeof status === 'number' && status >= 500;
}

/**
 * Matches an error after which a write request may have taken effect on GitHub: a server error,
 * a request without a response, or an invalid 2xx response (UnexpectedGitHubAnswerError).
 */
export function mayHaveWritten(error: unknown): boolean {
  return isServerError(error) || error instanceof UnexpectedGitHubAnswerError;
}
