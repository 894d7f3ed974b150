import { timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import type { Logger } from '../../logger.ts';
import { AppError } from '../errors.ts';
import type { ActiveSession } from './session-store.ts';

/** Name of the hidden form field that carries the CSRF token. */
export const csrfFieldName = '_csrf';
/** Header that htmx and API callers send the CSRF token in. */
export const csrfHeaderName = 'X-CSRF-Token';

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isUnsafeMethod(method: string): boolean {
  return !safeMethods.has(method.toUpperCase());
}

/** Compares in constant time, so response timing does not reveal a prefix of the token. */
export function tokensMatch(expected: string, given: string | undefined): boolean {
  if (!given) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Reads the token from the header, or else from a form body's hidden field. */
export async function readCsrfToken(
  c: Context,
  options: { allowFormField: boolean },
): Promise<string | undefined> {
  const header = c.req.header(csrfHeaderName);
  if (header) return header;
  if (!options.allowFormField) return undefined;
  const type = c.req.header('content-type') ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded') && !type.startsWith('multipart/form-data')) {
    return undefined;
  }
  // Hono caches the parsed body, so the route handler can parse it again.
  const body = await c.req.parseBody();
  const value = body[csrfFieldName];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Raises 403 and logs `csrf.rejected` when a request with an unsafe method lacks the
 * session's CSRF token. Pages accept the token from a form field; the JSON API only from the
 * header, whose absence `message` explains.
 */
export async function requireCsrfToken(
  c: Context,
  session: ActiveSession,
  logger: Logger,
  options: { allowFormField: boolean; message: string },
): Promise<void> {
  if (!isUnsafeMethod(c.req.method)) return;
  const sent = await readCsrfToken(c, { allowFormField: options.allowFormField });
  if (tokensMatch(session.csrfToken, sent)) return;
  logger.warn(
    {
      event: 'csrf.rejected',
      requestId: c.get('requestId'),
      userId: session.user.id,
      sessionId: session.id,
      method: c.req.method,
      path: c.req.path,
    },
    'request without a valid CSRF token',
  );
  throw new AppError('forbidden', options.message);
}
