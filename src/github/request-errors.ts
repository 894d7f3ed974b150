import { requestPath, UnexpectedGitHubAnswerError } from './github-response.ts';
import { asInstallationUnavailable } from './installation-unavailable.ts';

/** Matches the RequestError that Octokit raises for a 5xx response or a request without one. */
export function isServerError(error: unknown): boolean {
  const status = (error as { status?: unknown }).status;
  return error instanceof Error && typeof status === 'number' && status >= 500;
}

/**
 * Matches the RequestError that Octokit raises for a 404 response to the request itself. A 404
 * to minting the installation token that the request needed means the app was uninstalled, not
 * that the resource is missing, so it does not match.
 */
export function isNotFound(error: unknown): boolean {
  if (!(error instanceof Error) || (error as { status?: unknown }).status !== 404) return false;
  return asInstallationUnavailable(error) === null;
}

/**
 * Matches an error after which a write request may have taken effect on GitHub: a server error,
 * a request without a response, or an invalid 2xx response (UnexpectedGitHubAnswerError).
 */
export function mayHaveWritten(error: unknown): boolean {
  return isServerError(error) || error instanceof UnexpectedGitHubAnswerError;
}

/** A failed GitHub request: its method and decoded URL path, such as `/repos/octo-org/widgets`. */
export interface FailedGitHubRequest {
  method: string;
  path: string;
}

/**
 * Returns the request that `error` failed on, for an UnexpectedGitHubAnswerError (and so a
 * GitHubResponseTooLargeError), an Octokit RequestError, or another Error whose
 * `failedRequest` field names one, or null for other errors. Only the method and the URL's path
 * are read: a RequestError's request also has its headers, with the token redacted by Octokit,
 * and a URL's query string could carry a secret.
 */
export function readFailedRequest(error: unknown): FailedGitHubRequest | null {
  if (error instanceof UnexpectedGitHubAnswerError) {
    return { method: error.method, path: error.path };
  }
  const named = error instanceof Error ? (error as { failedRequest?: unknown }).failedRequest : null;
  if (isFailedGitHubRequest(named)) return { method: named.method, path: named.path };
  if (!(error instanceof Error) || error.name !== 'HttpError') return null;
  const { request } = error as { request?: { method?: unknown; url?: unknown } };
  if (typeof request?.method !== 'string' || typeof request.url !== 'string') return null;
  return { method: request.method, path: requestPath(request.url) };
}

function isFailedGitHubRequest(value: unknown): value is FailedGitHubRequest {
  if (typeof value !== 'object' || value === null) return false;
  const { method, path } = value as { method?: unknown; path?: unknown };
  return typeof method === 'string' && typeof path === 'string';
}
