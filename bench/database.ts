import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { findFreePort, startEmbeddedPostgres } from '../src/db/bundled.ts';
import { migrateDatabase } from '../src/db/migrate.ts';

export interface BenchDatabase {
  /** URL of the migrated database `bench`. */
  url: string;
  port: number;
  /** Stops the server and removes its folder; later calls return the same promise. */
  stop(): Promise<void>;
}

/**
 * Starts an embedded PostgreSQL with default durability settings in a temporary folder, on
 * 127.0.0.1, and creates and migrates the database `bench` on it. Call `stop` when done.
 */
export async function startBenchDatabase(): Promise<BenchDatabase> {
  const parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-bench-'));
  await chmod(parent, 0o755);
  const port = await findFreePort();
  const credentials = { user: 'bench', password: 'bench-only' };
  const server = await startEmbeddedPostgres({
    clusterDir: path.join(parent, 'pg'),
    port,
    credentials,
    persistent: false,
  });
  // The server runs in its own process group, so an interrupted run must stop it itself: on
  // Ctrl-C, on SIGTERM, and when the reader of the output goes away (a closed pipe).
  let stopped: Promise<void> | undefined;
  const cleanUp = () => {
    stopped ??= server.stop().finally(() => rm(parent, { recursive: true, force: true }));
    return stopped;
  };
  const abort = (reason: string) => {
    console.error(`Stopping the benchmark's PostgreSQL: ${reason}.`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', () => abort('interrupted'));
  process.once('SIGTERM', () => abort('terminated'));
  process.stdout.on('error', () => abort('the output pipe closed'));
  try {
    const admin = postgres(`postgres://bench:bench-only@127.0.0.1:${port}/postgres`, { max: 1 });
    await admin.unsafe('CREATE DATABASE bench');
    await admin.end();
    const url = `postgres://bench:bench-only@127.0.0.1:${port}/bench`;
    await migrateDatabase(url);
    return { url, port, stop: cleanUp };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

export function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Builds the settle operation of `apply_allowance_batch` for a benchmark call of 25 tokens
 * (15 prompt, 10 completion) on platform keys.
 */
export function benchSettleOperation(key: string, reservation: string | null) {
  return {
    kind: 'settle',
    reservation,
    key,
    provider: 'groq',
    model: 'bench',
    source: 'platform',
    prompt: 15,
    completion: 10,
    total: 25,
    patchRequest: null,
    path: null,
  };
}

/**
 * Runs the bare loop's statement once: a conditional increment of 25 tokens on the user row, as
 * a postgres.js tagged template, which postgres.js runs as a prepared statement.
 */
export async function bareUpdate(sql: postgres.Sql, userId: string): Promise<void> {
  await sql`
    UPDATE users SET tokens_used = tokens_used + ${25}
    WHERE id = ${userId} AND (token_limit < 0 OR tokens_used + ${25} <= token_limit)
    RETURNING tokens_used`;
}
