// closeOnAbort closes a postgres.js pool at once when its signal aborts, also while a
// connection starts. The check runs in a child process, so that an unhandled rejection ends
// that process as it would end a command.
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { runTsxScript } from '../helpers/process.ts';

const script = path.join(import.meta.dirname, 'fixtures/close-on-abort-child.ts');

describe('closeOnAbort', () => {
  it('closes connections while starting and running', async () => {
    const outcome = await runTsxScript(script, [inject('adminDatabaseUrl')], {
      killAfterMs: 30_000,
    });

    expect(outcome.stderr).toBe('');
    expect(outcome.code).toBe(0);
    expect(outcome.stdout.trim().split('\n')).toEqual([
      'while starting: CONNECTION_DESTROYED',
      'while running: CONNECTION_DESTROYED at once',
      'done',
    ]);
  }, 40_000);
});
