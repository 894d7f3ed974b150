// closeOnAbort closes a postgres.js pool at once when its signal aborts, also while a
// connection starts. The check runs in a child process, so that an unhandled rejection ends
// that process as it would end a command.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';

const repositoryRoot = path.resolve(import.meta.dirname, '../..');

/** Runs the child script with tsx, killing it after 30 s, and returns its exit code and output. */
function runChild(databaseUrl: string) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const script = path.join(repositoryRoot, 'test/db/fixtures/close-on-abort-child.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', script, databaseUrl], {
      cwd: repositoryRoot,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('closeOnAbort', () => {
  it('closes connections while starting and running', async () => {
    const outcome = await runChild(inject('adminDatabaseUrl'));

    expect(outcome.stderr).toBe('');
    expect(outcome.code).toBe(0);
    expect(outcome.stdout.trim().split('\n')).toEqual([
      'while starting: CONNECTION_DESTROYED',
      'while running: CONNECTION_DESTROYED at once',
      'done',
    ]);
  }, 40_000);
});
