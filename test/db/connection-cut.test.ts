// A connection that PostgreSQL or the network closes right after it starts fails only the
// queries sent on it. The check runs in a child process, so that an unhandled rejection ends
// that process as it would end the service.
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { runTsxScript } from '../helpers/process.ts';

const script = path.join(import.meta.dirname, 'fixtures/connection-cut-child.ts');

describe('connectDatabase', () => {
  it('survives a connection cut after start-up', async () => {
    const outcome = await runTsxScript(script, [inject('adminDatabaseUrl')], {
      killAfterMs: 30_000,
    });

    expect(outcome.stderr).toBe('');
    expect(outcome.code).toBe(0);
    expect(outcome.stdout.trim().split('\n')).toEqual([
      'first query: CONNECTION_CLOSED, connections: 1',
      'done',
    ]);
  }, 40_000);
});
