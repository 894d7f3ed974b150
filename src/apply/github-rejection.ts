import type { ApplyMode } from '../db/schema/index.ts';
import { redactCredentials } from '../errors/redact-credentials.ts';
import { safeErrorMessage } from '../errors/safe-error.ts';
import { requestPath, UnexpectedGitHubAnswerError } from '../github/github-response.ts';

/**
 * A request that GitHub rejected, that failed before GitHub returned a response, or whose 2xx
 * response Apply cannot read.
 */
export interface GitHubRejection {
  /** HTTP status from GitHub; Octokit reports 500 when no response arrived. */
  status: number;
  /**
   * GitHub's `message` field followed by the reasons in its `errors` field, or Octokit's error
   * message when the body has no `message`, with credentials redacted. For an invalid response,
   * what is wrong with it.
   */
  message: string;
  method: string;
  /** Decoded URL path of the request, such as `/repos/octo-org/widgets/git/refs/heads/feature`. */
  path: string;
  /** Set when no response arrived: the connection failed or timed out. */
  noResponse?: true;
  /** Set when GitHub returned a 2xx response that lacks or mistypes a field that Apply reads. */
  invalidResponse?: true;
}

/**
 * Returns the request and response of an Octokit RequestError, or of a response that lacked
 * or mistyped a field (reported as 502 with `invalidResponse`), or null for other errors.
 */
export function asGitHubRejection(error: unknown): GitHubRejection | null {
  if (error instanceof UnexpectedGitHubAnswerError) {
    return {
      status: error.status,
      message: error.problem,
      method: error.method,
      path: error.path,
      invalidResponse: true,
    };
  }
  if (!(error instanceof Error) || error.name !== 'HttpError') return null;
  const { status, request, response } = error as {
    status?: unknown;
    request?: { method?: unknown; url?: unknown };
    response?: { data?: unknown };
  };
  if (typeof status !== 'number') return null;
  const data = response?.data as { message?: unknown; errors?: unknown } | undefined;
  let message = typeof data?.message === 'string' ? data.message : error.message;
  const reasons = errorReasons(data?.errors);
  if (reasons.length > 0) message = `${message}: ${reasons.join('; ')}`;
  // The message is stored and shown, and a proxy or GitHub may echo a token in the body.
  message = redactCredentials(message);
  const url = typeof request?.url === 'string' ? request.url : '';
  return {
    status,
    message,
    method: typeof request?.method === 'string' ? request.method : 'request',
    path: requestPath(url),
    // Octokit reports a request without a response (refused, reset, timed out) as status 500.
    ...(response === undefined ? { noResponse: true as const } : {}),
  };
}

/**
 * Describes a failed request in one clause without a final period, such as `GitHub returned 502
 * "Server Error" for PATCH /repos/octo-org/widgets/git/refs/heads/feature`. An error that is
 * not a GitHub rejection is described by its message.
 */
export function describeFailedRequest(error: unknown): string {
  const rejection = asGitHubRejection(error);
  if (!rejection) return safeErrorMessage(error);
  const request = `${rejection.method} ${rejection.path}`;
  if (rejection.invalidResponse) {
    return (
      `GitHub returned an invalid response (status ${rejection.status}) to ${request}: ` +
      rejection.message
    );
  }
  if (rejection.noResponse) return `GitHub did not respond to ${request}: ${rejection.message}`;
  return `GitHub returned ${rejection.status} ${JSON.stringify(rejection.message)} for ${request}`;
}

/**
 * Returns the reasons in the `errors` array of GitHub's error body. A 422 often puts its only
 * reason there, as a string ("Pull request review thread line must be part of the diff") or as
 * an object with `message`, or with `resource`, `field` and `code`.
 */
function errorReasons(errors: unknown): string[] {
  if (!Array.isArray(errors)) return [];
  return errors.flatMap((entry: unknown) => {
    if (typeof entry === 'string') return [entry];
    if (typeof entry !== 'object' || entry === null) return [];
    const { message, resource, field, code } = entry as Record<string, unknown>;
    if (typeof message === 'string') return [message];
    const parts = [resource, field, code].filter((part) => typeof part === 'string');
    return parts.length > 0 ? [parts.join(' ')] : [];
  });
}

/**
 * Builds the message for an apply that GitHub rejected: the request, GitHub's status and
 * message, the next step for the user, and that the patch request is unchanged.
 */
export function describeGitHubRejection(
  rejection: GitHubRejection,
  apply: { patchRequestId: string; repository: string; headSha: string; mode: ApplyMode },
): string {
  const request = `${rejection.method} ${rejection.path}`;
  if (rejection.invalidResponse) {
    return (
      `GitHub returned an invalid response (status ${rejection.status}) to ${request}: ` +
      `${rejection.message}. GitHub, or a proxy between this server and GITHUB_API_URL, may be ` +
      `failing, so wait a few minutes. Patch request ${apply.patchRequestId} was not applied, so ` +
      'you can apply it again after that.'
    );
  }
  if (rejection.noResponse) {
    return (
      `GitHub did not respond to ${request}: ${rejection.message}. Check that this server ` +
      `reaches GITHUB_API_URL. Patch request ${apply.patchRequestId} was not applied, so you ` +
      'can apply it again after that.'
    );
  }
  const response =
    rejection.status >= 500 && rejection.message.length === 0
      ? `failed with ${rejection.status}`
      : `returned ${rejection.status} ${JSON.stringify(rejection.message)}`;
  return (
    `GitHub ${response} for ${request}. ${nextStep(rejection, apply)} Patch request ` +
    `${apply.patchRequestId} was not applied, so you can apply it again after that.`
  );
}

function nextStep(
  rejection: GitHubRejection,
  apply: { repository: string; headSha: string; mode: ApplyMode },
): string {
  const { status, message } = rejection;
  if (status === 403 && /not accessible by integration/i.test(message)) {
    return (
      'The GitHub App lacks a permission that applying needs. Grant Contents: write and Pull ' +
      'requests: write in the GitHub App settings, and have an owner of the account accept ' +
      'the new permissions.'
    );
  }
  if (status === 404) {
    return (
      `The app can no longer read ${apply.repository}, its branch or the previewed commit ` +
      `${apply.headSha}. Check that the installation still includes ${apply.repository}, then ` +
      "re-run the preview on the pull request's current head."
    );
  }
  if (status === 422 && apply.mode === 'commit') {
    return (
      'GitHub did not accept the commit, for example because the branch is protected. Re-run ' +
      'the preview on the pull request\'s current head, or apply with {"mode": "suggestions"} ' +
      'to post the fixes as a review.'
    );
  }
  if (status === 422) {
    return "Re-run the preview on the pull request's current head.";
  }
  if (status === 409) {
    return 'GitHub reported a conflict on its side. Wait a minute.';
  }
  if (status >= 500) {
    return 'GitHub failed or could not be reached. Wait a few minutes.';
  }
  return `Check the app's access to ${apply.repository} in the GitHub App settings.`;
}
