import { DrizzleQueryError } from 'drizzle-orm';
import postgres from 'postgres';
import { readFailedRequest } from '../github/request-errors.ts';
import { stripNul } from '../text/strip-nul.ts';
import { redactCredentials } from './redact-credentials.ts';

/** Maximum length of an error message that is logged or stored, in characters. */
export const maxSafeMessageLength = 2000;
const maxStackLength = 8000;
const maxCauseDepth = 3;

/**
 * An error reduced to fields that are safe to log and store: no SQL text, no query parameters,
 * no PostgreSQL detail (which can quote row values), no HTTP response body and no request
 * headers or query string. Credentials that a message or stack quotes, such as a GitHub error
 * body that echoes a token, are replaced by redactCredentials.
 */
export interface SafeError {
  type: string;
  message: string;
  /** PostgreSQL SQLSTATE, Node.js or library error code, when the error has one. */
  code?: string;
  /** HTTP status of a failed API call, when the error has one. */
  status?: number;
  /**
   * Method and decoded URL path of the GitHub request that failed, such as `GET
   * /repos/octo-org/widgets/pulls/7`, for an invalid GitHub response or an Octokit RequestError.
   */
  request?: string;
  stack?: string;
  cause?: SafeError;
}

/** Redacts credentials in `text`, then cuts it to `maxLength` characters. */
function clip(text: string, maxLength: number): string {
  // Redacted before the cut, so that a cut cannot leave part of a token unmatched.
  const clean = redactCredentials(stripNul(text));
  return clean.length > maxLength ? `${clean.slice(0, maxLength - 1)}…` : clean;
}

/** Describes a thrown value that is not an Error, such as the plain objects pg-boss emits. */
function fromNonError(value: unknown): SafeError {
  const { name, message } =
    typeof value === 'object' && value !== null
      ? (value as { name?: unknown; message?: unknown })
      : {};
  let text: string;
  if (typeof message === 'string') {
    text = message;
  } else {
    try {
      text = String(value);
    } catch {
      text = 'a value that cannot be converted to text';
    }
  }
  return {
    type: typeof name === 'string' ? name : typeof value,
    message: clip(text, maxSafeMessageLength),
  };
}

/**
 * Converts any thrown value into a SafeError. A DrizzleQueryError's own message contains the
 * query and its parameters (for example whole file contents), so only the SQLSTATE and message
 * of its cause are kept. A PostgresError keeps its code and message, without `detail`.
 */
export function toSafeError(error: unknown, depth = 0): SafeError {
  if (error instanceof DrizzleQueryError) {
    const cause = error.cause === undefined ? undefined : toSafeError(error.cause, depth + 1);
    return {
      type: 'DrizzleQueryError',
      message: cause ? `Database query failed: ${cause.message}` : 'Database query failed.',
      code: cause?.code,
      stack: cause?.stack,
    };
  }
  if (error instanceof postgres.PostgresError) {
    return {
      type: 'PostgresError',
      message: clip(error.message, maxSafeMessageLength),
      code: error.code,
      stack: error.stack === undefined ? undefined : clip(error.stack, maxStackLength),
    };
  }
  if (!(error instanceof Error)) return fromNonError(error);

  const { code, status } = error as { code?: unknown; status?: unknown };
  const safe: SafeError = {
    type: error.name,
    message: clip(error.message, maxSafeMessageLength),
  };
  if (typeof code === 'string') safe.code = code;
  if (typeof status === 'number') safe.status = status;
  const request = readFailedRequest(error);
  if (request) safe.request = `${request.method} ${clip(request.path, maxSafeMessageLength)}`;
  if (error.stack !== undefined) safe.stack = clip(error.stack, maxStackLength);
  if (error.cause !== undefined && depth < maxCauseDepth) {
    safe.cause = toSafeError(error.cause, depth + 1);
  }
  return safe;
}

/** Returns the message of `toSafeError(error)`, cut to `maxLength` characters. */
export function safeErrorMessage(error: unknown, maxLength = maxSafeMessageLength): string {
  return clip(toSafeError(error).message, maxLength);
}

