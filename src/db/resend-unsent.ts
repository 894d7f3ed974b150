import postgres, { type Sql } from 'postgres';

/**
 * SQLSTATEs of the FATAL errors with which PostgreSQL ends a session: admin_shutdown
 * (pg_terminate_backend, a fast shutdown), idle_session_timeout,
 * idle_in_transaction_session_timeout and transaction_timeout.
 */
const sessionEndCodes = new Set(['57P01', '57P05', '25P03', '25P04']);

/** The fields of a postgres.js 3.4.9 query (src/query.js) that the resend reads or replaces. */
interface QueryInternals {
  /** Null until a connection's execute() takes the query and starts writing it. */
  state: unknown;
  /** The pool's dispatcher, which hands the query to an open connection or opens one. */
  handler(query: QueryInternals): void;
  reject(error: unknown): void;
}

/**
 * Sends a pool query again when it failed with the error of a session that had ended before
 * the query was written. postgres.js 3.4.9 keeps the FATAL error of a session that PostgreSQL
 * ended while a query ran (pg_terminate_backend, a restart). After reconnecting, it rejects the
 * next query of that connection with it (ReadyForQuery in src/connection.js). That query waited
 * for the connection to open and was never written, so its `state` is still null and sending it
 * again cannot repeat a statement. A query that a connection started to write has a `state`
 * and is never sent again.
 *
 * A connection replays the error of an ended session once, and a resent query may land on
 * another connection with such an error, so `maxResends` is the pool size. Covers `sql.unsafe`,
 * which drizzle, `executePrepared` and the BEGIN of `sql.begin` use. Queries inside a
 * transaction run on its reserved connection and are not covered.
 *
 * NOTE: a query written to an idle connection in the moment between pg_terminate_backend (or a
 * shutdown) and the client reading the close fails with CONNECTION_CLOSED. It is not sent again,
 * because nothing shows that the server did not read it.
 */
export function resendUnsentQueries(
  sql: Sql,
  options: { maxResends: number; onResend?: (error: postgres.PostgresError) => void },
): void {
  const unsafe = sql.unsafe.bind(sql) as (...args: unknown[]) => unknown;
  const resendingUnsafe = (...args: unknown[]) => {
    const query = unsafe(...args) as QueryInternals;
    const reject = query.reject;
    let resends = 0;
    query.reject = (error: unknown) => {
      if (query.state === null && resends < options.maxResends && isEndedSessionError(error)) {
        resends++;
        options.onResend?.(error);
        // After this rejection, postgres.js moves the reconnected connection to the open ones,
        // so the query waits for that to finish and then takes it.
        queueMicrotask(() => query.handler(query));
        return;
      }
      reject(error);
    };
    return query;
  };
  sql.unsafe = resendingUnsafe as unknown as Sql['unsafe'];
}

/** True for the FATAL error with which PostgreSQL ended a session. */
function isEndedSessionError(error: unknown): error is postgres.PostgresError {
  return (
    error instanceof postgres.PostgresError &&
    error.severity === 'FATAL' &&
    sessionEndCodes.has(error.code)
  );
}
