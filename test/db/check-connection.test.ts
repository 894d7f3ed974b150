import { describe, expect, it } from 'vitest';
import { checkDatabaseUrl, describeConnectionFailure } from '../../src/db/check-connection.ts';
import { StartupError } from '../../src/errors/startup-error.ts';

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
