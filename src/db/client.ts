import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres, { type PostgresType, type Sql } from 'postgres';
import * as schema from './schema/index.ts';
import { parseTextArray, serializeTextArray, textArrayOid } from './arrays.ts';
import { guardTransactions } from './transaction-guard.ts';
import { resendUnsentQueries } from './resend-unsent.ts';
import type { Logger } from '../logger.ts';

export type Database = PostgresJsDatabase<typeof schema>;
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

export interface DatabaseHandle {
  db: Database;
  sql: Sql;
  close(): Promise<void>;
}

const textArrayType: PostgresType<(string | null)[]> = {
  to: textArrayOid,
  from: [textArrayOid],
  parse: parseTextArray,
  serialize: serializeTextArray,
};

/**
 * Options that every postgres.js client of Fixwright starts from. `fetch_types: false` skips the
 * array-type query that postgres.js 3.4.9 sends first on each new connection and whose rejection
 * it leaves unhandled (fetchArrayTypes() in src/connection.js). Without it, a session that
 * PostgreSQL ends at that moment (a restart, pg_terminate_backend) or that closeOnAbort closes
 * would end the process. Without the array types postgres.js returns arrays as text, so
 * `text[]`, the type of Fixwright's array columns, gets a parser of its own here.
 */
export const baseClientOptions = {
  fetch_types: false,
  onnotice: () => {},
  types: { textArray: textArrayType },
} as const;

/** URL of each database that connectDatabase opened. */
const databaseUrls = new WeakMap<Database, string>();

/**
 * Opens a postgres.js pool with drizzle on top. Its transactions are guarded against a
 * connection that closes while they run (see guardTransactions), and a query that fails with the
 * error of a session that ended before the query was sent is sent again (see
 * resendUnsentQueries), logged as `database.query_resent` on `logger`.
 */
export function connectDatabase(
  url: string,
  options: { max?: number; logger?: Logger } = {},
): DatabaseHandle {
  const max = options.max ?? 10;
  const sql = postgres(url, {
    ...baseClientOptions,
    max,
    connection: { application_name: 'fixwright' },
  });
  guardTransactions(sql);
  resendUnsentQueries(sql, {
    maxResends: max,
    onResend: (error) =>
      options.logger?.info(
        { event: 'database.query_resent', code: error.code, message: error.message },
        'sent a query again: its connection reconnected and returned the error of its ended ' +
          'session before sending the query',
      ),
  });
  const db = drizzle(sql, { schema, casing: 'snake_case' });
  databaseUrls.set(db, url);
  return { db, sql, close: () => sql.end({ timeout: 5 }) };
}

/** Returns the URL that connectDatabase opened `db` with, for a connection of its own. */
export function databaseUrlOf(db: Database): string {
  const url = databaseUrls.get(db);
  if (url === undefined) {
    throw new Error('This database was not opened by connectDatabase, so its URL is unknown.');
  }
  return url;
}

/**
 * Closes every connection of `sql` at once when `signal` aborts, which fails the queries in
 * flight. PostgreSQL rolls back a connection's open transaction when it finds the connection
 * gone, which for a running statement is when that statement ends. Returns a function that
 * removes the listener.
 */
export function closeOnAbort(sql: Sql, signal: AbortSignal | undefined): () => void {
  if (!signal) return () => {};
  const closeNow = () => {
    sql.end({ timeout: 0 }).catch(() => {});
  };
  if (signal.aborted) closeNow();
  else signal.addEventListener('abort', closeNow, { once: true });
  return () => signal.removeEventListener('abort', closeNow);
}
