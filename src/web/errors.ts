import { ConfigError } from '../config/env.ts';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { isDatabaseUnreachable } from '../db/connection-errors.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { quoteValue } from '../text/quote-value.ts';
import type { InstallationUnavailableError } from '../github/installation-unavailable.ts';
import { describeNoProvider, payerYou } from '../autofix/no-provider.ts';
import type { PreviewPayment } from '../autofix/preview-budget.ts';
import { platformKeyRejectedPreviewReason } from '../keys/platform-key-rejections.ts';
import type { Logger } from '../logger.ts';
import type { PullRequestClosedError } from '../runs/pull-request-closed.ts';
import { renderError } from './views/error-page.tsx';

export const errorCodes = {
  bad_request: 400,
  invalid_signature: 401,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  request_timeout: 408,
  conflict: 409,
  payload_too_large: 413,
  rate_limited: 429,
  internal: 500,
  bad_gateway: 502,
  not_configured: 503,
  service_unavailable: 503,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof errorCodes;

/** The one error type handlers throw; `onError` turns it into the JSON body and status. */
export class AppError extends Error {
  override name = 'AppError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }

  get status(): ContentfulStatusCode {
    return errorCodes[this.code];
  }
}

/** Maximum length, in characters, of a quoted id in a not-found message. UUIDs fit whole. */
const maxQuotedIdLength = 80;

export function notFound(resource: string, id: string): AppError {
  return new AppError('not_found', `${resource} ${quoteValue(id, maxQuotedIdLength)} not found.`);
}

/**
 * Returns a 503 with the rejection message when the platform key that would pay for a preview
 * is rejected and the user has no own key, or null otherwise. The operator has to replace the
 * key, so this is not the 409 of an allowance that the user can act on. The details name the
 * provider and the HTTP status of the rejection. `notDone` names what did not happen, as
 * platformKeyRejectedPreviewReason takes it.
 */
export function fromPlatformKeyRejected(payment: PreviewPayment, notDone?: string): AppError | null {
  if (payment.kind !== 'allowance' || !payment.platformKeyRejection) return null;
  const { provider, status } = payment.platformKeyRejection;
  return new AppError('service_unavailable', platformKeyRejectedPreviewReason(provider, status, notDone), {
    provider,
    status,
  });
}

/**
 * Returns a 503 when no model provider can pay for a preview, or null otherwise. Every file of
 * such a preview would fail, so none is started. It is a 503 `not_configured`, like a missing
 * setting, because the service cannot run previews for the user as configured, and no change
 * to the run or the selection helps. The details name the providers whose stored own key is
 * unusable. `outcome` ends the message with what was not done.
 */
export function fromNoProvider(
  payment: PreviewPayment,
  outcome = 'No preview was started.',
): AppError | null {
  if (payment.kind !== 'no_provider') return null;
  const message = `${describeNoProvider(payment.unusableOwnKeys, payerYou)} ${outcome}`;
  return new AppError('not_configured', message, { unusableOwnKeys: payment.unusableOwnKeys });
}

/**
 * Turns a suspended or deleted installation into a 409 with the error's message, which names
 * the account and the step an owner of it must take. The details name the installation, its
 * account login and the reason, `suspended` or `uninstalled`.
 */
export function fromInstallationUnavailable(error: InstallationUnavailableError): AppError {
  return new AppError('conflict', error.message, error.details());
}

/**
 * Turns a closed pull request into a 409 with the error's message, which names the pull
 * request and tells the user to reopen it. The details name the repository, the pull request
 * number and when it was closed.
 */
export function fromPullRequestClosed(error: PullRequestClosedError): AppError {
  return new AppError('conflict', error.message, {
    repository: error.repository,
    pullRequest: error.prNumber,
    pullRequestClosedAt: error.closedAt.toISOString(),
  });
}

/** Seconds a client is asked to wait (Retry-After) while the database is unreachable. */
const databaseRetrySeconds = 5;

/** API, webhook and health routes return JSON, and every other route is a dashboard page. */
function isPageRequest(c: Context): boolean {
  const path = c.req.path;
  return !path.startsWith('/api/') && !path.startsWith('/webhooks/') && path !== '/healthz';
}

/**
 * Builds every error response: `{ error: { code, message, requestId } }` for the API, an HTML
 * page for pages, and an HTML fragment for htmx requests.
 */
export function handleError(error: Error, c: Context, logger: Logger): Response | Promise<Response> {
  const requestId = c.get('requestId') as string | undefined;
  let code: ErrorCode = 'internal';
  let status: ContentfulStatusCode = 500;
  let message = `Internal error; the server log has the details under request id ${requestId}.`;
  let details: Record<string, unknown> | undefined;
  if (error instanceof AppError) {
    ({ code, status, message, details } = error);
  } else if (error instanceof ConfigError) {
    // A missing setting, such as the GitHub App credentials: the operator must set it.
    code = 'not_configured';
    status = errorCodes.not_configured;
    message = error.message;
  } else if (toSafeError(error).code === '22021') {
    // PostgreSQL rejects text with a NUL character (invalid byte sequence for UTF8).
    code = 'bad_request';
    status = errorCodes.bad_request;
    message = 'Invalid input: text must not contain NUL (U+0000) characters; remove them and try again.';
  } else if (isDatabaseUnreachable(error)) {
    code = 'service_unavailable';
    status = errorCodes.service_unavailable;
    // The request id is in the response's requestId field and on the error page, not here.
    message = 'The database is not reachable; try again in a few seconds.';
    c.header('Retry-After', String(databaseRetrySeconds));
    const { type, message: reason, code: cause } = toSafeError(error);
    logger.warn(
      {
        event: 'http.database_unavailable',
        err: { type, message: reason, code: cause },
        requestId,
        method: c.req.method,
        path: c.req.path,
      },
      'request failed: the database is not reachable',
    );
  } else {
    logger.error(
      {
        event: 'http.unhandled_error',
        err: toSafeError(error),
        requestId,
        method: c.req.method,
        path: c.req.path,
      },
      'request failed',
    );
  }

  if (isPageRequest(c)) {
    const fragment = c.req.header('hx-request') !== undefined;
    return c.html(renderError({ status, message, requestId }, fragment), status);
  }
  return c.json({ error: { code, message, requestId, ...details } }, status);
}
