import { describe, expect, it } from 'vitest';
import { checkDatabaseUrl } from '../../src/db/check-connection.ts';
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
