import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres, { type Sql } from 'postgres';
import * as schema from './schema/index.ts';

export type Database = PostgresJsDatabase<typeof schema>;
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

export interface DatabaseHandle {
  db: Database;
  sql: Sql;
  close(): Promise<void>;
}

export function connectDatabase(url: string, options: { max?: number } = {}): DatabaseHandle {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connection: { application_name: 'fixwright' },
  });
  const db = drizzle(sql, { schema, casing: 'snake_case' });
  return { db, sql, close: () => sql.end({ timeout: 5 }) };
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
    ignoreDestroyedConnectionRejections();
    sql.end({ timeout: 0 }).catch(() => {});
  };
  if (signal.aborted) closeNow();
  else signal.addEventListener('abort', closeNow, { once: true });
  return () => signal.removeEventListener('abort', closeNow);
}

let ignoringDestroyedConnections = false;

/**
 * Keeps a connection that closeOnAbort destroys while it starts from ending the process. On
 * each new connection postgres.js 3.4.9 first queries the array types in fetchArrayTypes()
 * (src/connection.js) and handles no rejection of that call, so destroying the connection
 * then raises an unhandled CONNECTION_DESTROYED rejection. The listener stays for the rest of
 * the process, because Node reports that rejection only after the microtasks that follow the
 * close. It throws every other unhandled rejection, as Node does when no listener exists.
 */
function ignoreDestroyedConnectionRejections(): void {
  if (ignoringDestroyedConnections) return;
  ignoringDestroyedConnections = true;
  process.on('unhandledRejection', (reason) => {
    if ((reason as { code?: unknown } | null)?.code === 'CONNECTION_DESTROYED') return;
    throw reason;
  });
}
