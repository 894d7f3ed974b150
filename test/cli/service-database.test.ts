import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort, startEmbeddedPostgres, type PostgresServer } from '../../src/db/bundled.ts';
import { cliEnv, runCli, runCliToExit, waitFor } from '../helpers/process.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

let parent: string;
const services: ServiceProcess[] = [];
const servers: PostgresServer[] = [];

/** Lines of a service's output that pino wrote at error level (50) or above. */
function errorLines(output: string): string[] {
  return output.split('\n').filter((line) => /"level":(50|60)/.test(line));
}

function linesWithEvent(output: string, event: string): string[] {
  return output.split('\n').filter((line) => line.includes(`"event":"${event}"`));
}

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-service-db-'));
  // The postgres system user runs the servers when the tests run as root.
  await chmod(parent, 0o755);
});

afterAll(async () => {
  for (const service of services) await service.stop('SIGKILL').catch(() => {});
  for (const server of servers) await server.stop().catch(() => {});
  await rm(parent, { recursive: true, force: true });
});

describe('start on a DATA_DIR in use', () => {
  it('rejects a second start and lets commands reuse', async () => {
    const dataDir = path.join(parent, 'shared-data');
    const first = await startServiceProcess({ DATA_DIR: dataDir });
    services.push(first);

    const second = await runCliToExit(['start'], cliEnv({ DATA_DIR: dataDir }));
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(
      `The bundled PostgreSQL in ${dataDir} is already run by another Fixwright process ` +
        `(pid ${first.process.pid}); stop that process first, or set DATABASE_URL to your own ` +
        'PostgreSQL to run several service processes.\n',
    );
    expect(linesWithEvent(second.stdout, 'bundled_postgres.reused')).toEqual([]);
    // The master key warning comes only once the database is up, so the error is the only output.
    expect(linesWithEvent(second.stdout, 'master_key.file_used')).toEqual([]);
    expect(linesWithEvent(first.output(), 'master_key.generated')).toHaveLength(1);

    // One-off commands still use the server that the first start runs.
    const token = await runCli(['users', 'token', '--login', 'octocat', '--create'], cliEnv({ DATA_DIR: dataDir }));
    expect(token.stdout.trim()).toMatch(/^\S{20,}$/);
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);

    await first.stop('SIGTERM');
    expect(first.process.exitCode).toBe(0);
    expect(errorLines(first.output())).toEqual([]);
    expect(linesWithEvent(first.output(), 'bundled_postgres.stopped')).toHaveLength(1);
  });
});

describe('database lost while running', () => {
  it('returns 503 and warns once', async () => {
    const clusterDir = path.join(parent, 'outage-cluster');
    const port = await findFreePort();
    const credentials = { user: 'fixwright', password: 'outage-test-password' };
    const startServer = async () => {
      const server = await startEmbeddedPostgres({
        clusterDir,
        port,
        credentials,
        persistent: true,
        fast: true,
      });
      servers.push(server);
      return server;
    };
    const server = await startServer();
    const service = await startServiceProcess({
      DATABASE_URL: `postgres://fixwright:outage-test-password@127.0.0.1:${port}/postgres`,
    });
    services.push(service);

    await server.stop();
    const unhealthy = await waitFor(
      async () => {
        const response = await fetch(`${service.url}/healthz`);
        return response.status === 503 ? response : undefined;
      },
      { timeoutMs: 10_000, describe: () => `/healthz to answer 503; output:\n${service.output()}` },
    );
    expect(unhealthy.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await unhealthy.json()) as { status: string; reason: string };
    expect(body.status).toBe('unavailable');
    // A pooled connection that was open when the server stopped reports CONNECTION_CLOSED;
    // a new one is refused.
    expect(body.reason).toMatch(
      /^The database did not answer SELECT 1 \((ECONNREFUSED|CONNECTION_CLOSED)\)\.$/,
    );

    // The workers poll every second, so a few seconds give them several failed fetches.
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    expect(errorLines(service.output())).toEqual([]);
    expect(linesWithEvent(service.output(), 'jobs.database_unavailable')).toHaveLength(1);
    expect(service.output()).not.toContain('"stack"');

    await startServer();
    await waitFor(async () => (await fetch(`${service.url}/healthz`)).status === 200, {
      timeoutMs: 15_000,
      describe: () => `/healthz to answer 200 again; output:\n${service.output()}`,
    });
    await waitFor(async () => linesWithEvent(service.output(), 'jobs.database_available').length === 1, {
      timeoutMs: 15_000,
      describe: () => `jobs.database_available in the output:\n${service.output()}`,
    });

    await service.stop('SIGTERM');
    expect(service.process.exitCode).toBe(0);
    expect(errorLines(service.output())).toEqual([]);
  }, 90_000);
});
