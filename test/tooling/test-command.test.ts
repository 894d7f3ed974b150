// The test command must exit non-zero and report the failure on its last line whenever a run fails. Each
// case runs the command on one fixture test file in a scratch project whose sources, global
// setup and helpers are links to this one, so the nested run starts its own PostgreSQL the
// way a real run does.
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const projectRoot = path.resolve(import.meta.dirname, '../..');
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'fixwright-test-command-'));
  const linked = ['node_modules', 'package.json', 'tsconfig.json', 'src', 'migrations', 'scripts'];
  for (const entry of linked) await symlink(path.join(projectRoot, entry), path.join(scratch, entry));
  await copyFile(path.join(projectRoot, 'vitest.config.ts'), path.join(scratch, 'vitest.config.ts'));
  await mkdir(path.join(scratch, 'test'));
  for (const entry of ['global-setup.ts', 'helpers']) {
    await symlink(path.join(projectRoot, 'test', entry), path.join(scratch, 'test', entry));
  }
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** Runs `npm test`'s script on `source` as the only test file; resolves with status and output. */
async function runTestCommand(source: string) {
  await writeFile(path.join(scratch, 'test/fixture.test.ts'), source);
  const child = spawn(process.execPath, ['scripts/run-tests.mjs'], {
    cwd: scratch,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TEST_POSTGRES: 'embedded', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const lines = output.trim().split('\n');
  return { status, lastLine: lines.at(-1), lineBefore: lines.at(-2), secondBefore: lines.at(-3), output };
}

describe('npm test', () => {
  it('fails on a failed assertion', async () => {
    const run = await runTestCommand(`
      import { expect, it } from 'vitest';
      it('compares', () => { expect(1).toBe(2); });
    `);
    expect(run.lastLine).toBe('0 passed, 1 failed');
    expect(run.status).toBe(1);
  }, 120_000);

  it('fails on an error thrown outside any test', async () => {
    const run = await runTestCommand(`
      import { expect, it } from 'vitest';
      it('starts background work that throws', () => {
        setTimeout(() => { throw new Error('thrown in background work'); }, 5);
        expect(1).toBe(1);
      });
      it('waits', async () => { await new Promise((resolve) => setTimeout(resolve, 100)); });
    `);
    expect(run.output).toContain('thrown in background work');
    expect(run.lastLine).toBe('2 passed, 1 failed');
    expect(run.status).toBe(1);
  }, 120_000);

  it('names and counts skipped tests', async () => {
    const run = await runTestCommand(`
      import { expect, it } from 'vitest';
      it('runs', () => { expect(1).toBe(1); });
      it.skip('is skipped', () => { expect(1).toBe(2); });
    `);
    expect(run.secondBefore).toBe('skipped: test/fixture.test.ts > is skipped');
    expect(run.lineBefore).toBe('1 skipped');
    expect(run.lastLine).toBe('1 passed, 0 failed');
    expect(run.status).toBe(0);
  }, 120_000);

  it('prints the reason of a skipped test', async () => {
    const run = await runTestCommand(`
      import { it } from 'vitest';
      import { skipWithReason } from './helpers/skip.ts';
      it('needs a resource', (test) => { skipWithReason(test, 'the resource is missing'); });
    `);
    expect(run.secondBefore).toBe(
      'skipped: test/fixture.test.ts > needs a resource (the resource is missing)',
    );
    expect(run.lineBefore).toBe('1 skipped');
    expect(run.lastLine).toBe('0 passed, 0 failed');
    expect(run.status).toBe(0);
  }, 120_000);
});
