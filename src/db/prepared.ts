import { PgDialect } from 'drizzle-orm/pg-core';
import type { SQL } from 'drizzle-orm';
import type { Sql } from 'postgres';
import type { Database } from './client.ts';

const dialect = new PgDialect({ casing: 'snake_case' });

/**
 * Runs a statement as a named prepared statement. drizzle's `execute` sends every statement
 * unprepared, so PostgreSQL plans it again on each call. For the allowance's statements,
 * which run on every model call, planning cost about as much as executing.
 */
export async function executePrepared<Row>(db: Database, statement: SQL): Promise<Row[]> {
  const client = (db as unknown as { $client: Sql }).$client;
  const query = dialect.sqlToQuery(statement);
  const rows = await client.unsafe(query.sql, query.params as never[], { prepare: true });
  return rows as unknown as Row[];
}
