import { DrizzleQueryError } from 'drizzle-orm';

/** Error codes of a connection that failed or was cut, from Node.js and PostgreSQL. */
const connectionErrorCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now, as while the server starts or stops
  // postgres.js 3.4 (the client of the web routes): a closed, timed-out or ended connection.
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  'CONNECT_TIMEOUT',
]);

/** True for an error that means the database cannot be reached, not that a query failed. */
export function isConnectionError(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (connectionErrorCodes.has(code) || code.startsWith('08'))) {
    return true;
  }
  // node-postgres raises these without a code when the server closes the socket.
  return typeof message === 'string' && /^Connection terminated\b/.test(message);
}

/**
 * True when `error` is a database connection that failed or was cut, as while PostgreSQL
 * restarts. drizzle wraps the errors of queries, but not those of opening a transaction, which
 * postgres.js raises as they are (ECONNREFUSED from the socket, say). A failed fetch keeps its
 * network code on `cause`, and Octokit's RequestError has no code, so GitHub calls do not count.
 */
export function isDatabaseUnreachable(error: unknown): boolean {
  return isConnectionError(error instanceof DrizzleQueryError ? error.cause : error);
}
