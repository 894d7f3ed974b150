import { describe, expect, it } from 'vitest';
import { describeStartFailure } from '../../src/db/bundled.ts';

describe('describeStartFailure', () => {
  it('advises freeing space for a full disk in the output', () => {
    const message = describeStartFailure('/srv/data/postgres', 'postgres exited (1)', [
      '2026-01-02 03:04:05.678 UTC [41] FATAL:  could not write lock file "postmaster.pid": No space left on device\n',
    ]);

    expect(message).toBe(
      'The bundled PostgreSQL in /srv/data/postgres failed to start: postgres exited (1). ' +
        'PostgreSQL output: 2026-01-02 03:04:05.678 UTC [41] FATAL: could not write lock file ' +
        '"postmaster.pid": No space left on device. The file system that holds /srv/data is ' +
        'full, so free space on it or set DATA_DIR to a folder on another file system, then run ' +
        'the command again. Or set DATABASE_URL to use your own PostgreSQL instead.',
    );
  });

  it('puts a multi-line initdb error on one line', () => {
    const reason =
      'Postgres init script failed (code: 1, signal: null). ERROR OUTPUT: initdb: error: could ' +
      'not create directory "/srv/data/postgres/global": Disk quota exceeded\ninitdb: removing data directory\n';

    const message = describeStartFailure('/srv/data/postgres', reason, []);

    expect(message).not.toContain('\n');
    expect(message).toContain('Disk quota exceeded initdb: removing data directory. PostgreSQL output: none.');
    expect(message).toContain('The file system that holds /srv/data is full');
  });

  it('keeps the advice for other failures', () => {
    const message = describeStartFailure('/srv/data/postgres', 'postgres exited (SIGKILL)', ['', 'ready\n']);

    expect(message).toBe(
      'The bundled PostgreSQL in /srv/data/postgres failed to start: postgres exited (SIGKILL). ' +
        'PostgreSQL output: ready. Set DATABASE_URL to use your own PostgreSQL instead.',
    );
  });
});
