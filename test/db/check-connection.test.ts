import { createRequire } from 'node:module';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/env.ts';
import { checkDatabaseUrl, describeConnectionFailure } from '../../src/db/check-connection.ts';
import { StartupError } from '../../src/errors/startup-error.ts';
import { errorResponse, startRejectingServer } from './fixtures/postgres-proxy.ts';

describe('checkDatabaseUrl', () => {
  it('reports a URL that does not parse', async () => {
    const error = await checkDatabaseUrl('postgres://u:hunter2@127.0.0.1:99999/db').then(
      () => undefined,
      (rejection: unknown) => rejection,
    );

    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toBe(
      'Cannot connect to DATABASE_URL "postgres://u:***@127.0.0.1:99999/db" at the host in ' +
        'DATABASE_URL: Invalid URL (ERR_INVALID_URL). Check DATABASE_URL and that the server ' +
        'accepts connections from this machine.',
    );
  });
});

describe('describeConnectionFailure', () => {
  it('masks a URL without "://" in the reason', () => {
    const url = 'postgres:/u:Sup3rSecret@127.0.0.1:1/db';
    const message = describeConnectionFailure(url, new Error(`cannot parse ${url} here`));

    expect(message).toBe(
      'Cannot connect to DATABASE_URL "postgres:/u:***@127.0.0.1:1/db" at localhost:5432: ' +
        'cannot parse postgres:/u:***@127.0.0.1:1/db here. Check DATABASE_URL and that the ' +
        'server accepts connections from this machine.',
    );
    expect(message).not.toContain('Sup3rSecret');
  });

  it('masks a password that contains "://"', () => {
    const url = 'postgres://u:Sup3r://Secret@127.0.0.1:1/db';
    const error = Object.assign(new Error(`${url} is refused`), { code: 'EXAMPLE' });
    const message = describeConnectionFailure(url, error);

    expect(message).toBe(
      'Cannot connect to DATABASE_URL "postgres://u:***@127.0.0.1:1/db" at the host in ' +
        'DATABASE_URL: postgres://u:***@127.0.0.1:1/db is refused (EXAMPLE). Check ' +
        'DATABASE_URL and that the server accepts connections from this machine.',
    );
    expect(message).not.toContain('Sup3r');
    expect(message).not.toContain('Secret');
  });
});

describe('checkDatabaseUrl on a server that is shutting down', () => {
  // What PostgreSQL sends a new connection during a smart shutdown.
  const shuttingDown = errorResponse({
    S: 'FATAL',
    V: 'FATAL',
    C: '57P03',
    M: 'the database system is shutting down',
  });
  const advice =
    'PostgreSQL is shutting down or starting up: retry once it has started. A smart shutdown ' +
    '(SIGTERM) waits for every client to disconnect, so stop the processes connected to it, ' +
    'such as "npm start", then start it again.';
  let server: Awaited<ReturnType<typeof startRejectingServer>>;

  beforeAll(async () => {
    server = await startRejectingServer(shuttingDown);
  });
  afterAll(async () => {
    await server?.close();
  });

  async function checkError(url: string, name?: string): Promise<unknown> {
    return checkDatabaseUrl(url, name).then(
      () => undefined,
      (rejection: unknown) => rejection,
    );
  }

  it('names 57P03 for DATABASE_URL', async () => {
    const error = await checkError(`postgres://u:hunter2@127.0.0.1:${server.port}/db`);

    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toBe(
      `Cannot connect to DATABASE_URL "postgres://u:***@127.0.0.1:${server.port}/db" at ` +
        `127.0.0.1:${server.port}: the database system is shutting down (SQLSTATE 57P03 ` +
        `cannot_connect_now). ${advice}`,
    );
  });

  it('names the bundled PostgreSQL', async () => {
    const url = `postgres://fixwright:hunter2@127.0.0.1:${server.port}/fixwright`;
    const error = await checkError(url, 'the bundled PostgreSQL');

    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toBe(
      `Cannot connect to the bundled PostgreSQL "postgres://fixwright:***@127.0.0.1:${server.port}/fixwright" ` +
        `at 127.0.0.1:${server.port}: the database system is shutting down (SQLSTATE 57P03 ` +
        `cannot_connect_now). ${advice}`,
    );
  });

  it('gives bundled advice for a refused connection', async () => {
    const closed = await startRejectingServer(shuttingDown);
    await closed.close();
    const url = `postgres://fixwright:hunter2@127.0.0.1:${closed.port}/fixwright`;

    const error = await checkError(url, 'the bundled PostgreSQL');

    expect((error as Error).message).toBe(
      `Cannot connect to the bundled PostgreSQL "postgres://fixwright:***@127.0.0.1:${closed.port}/fixwright" ` +
        `at 127.0.0.1:${closed.port}: connect ECONNREFUSED 127.0.0.1:${closed.port} (ECONNREFUSED). The ` +
        'Fixwright process that runs it may be stopping: run the command again once that ' +
        'process has stopped, or restart it with "npm start".',
    );
  });
});

/** The part of node-postgres's Client that the test below uses. */
type NodePostgresClient = new (config: { connectionString: string }) => {
  connect(): Promise<void>;
  query(text: string): Promise<{ rows: { name: string }[] }>;
  end(): Promise<void>;
};

describe('DATABASE_URL with a space in the password', () => {
  const adminUrl = inject('adminDatabaseUrl');
  const role = `space_${Date.now()}`;
  const password = 'pass word';

  beforeAll(async () => {
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    } finally {
      await admin.end();
    }
  });

  afterAll(async () => {
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`DROP ROLE IF EXISTS ${role}`);
    } finally {
      await admin.end();
    }
  });

  it('connects with both clients when the space is not encoded', async () => {
    const url = new URL(adminUrl);
    const value = `postgres://${role}:${password}@${url.host}/postgres`;
    expect(loadConfig({ DATABASE_URL: value }).DATABASE_URL).toBe(value);

    await expect(checkDatabaseUrl(value)).resolves.toBeUndefined();
    // pg-boss connects through its own node-postgres, which parses the URL with
    // pg-connection-string.
    const { Client } = createRequire(import.meta.resolve('pg-boss'))('pg') as { Client: NodePostgresClient };
    const client = new Client({ connectionString: value });
    await client.connect();
    try {
      const result = await client.query('SELECT current_user AS name');
      expect(result.rows[0]?.name).toBe(role);
    } finally {
      await client.end();
    }
  });
});
