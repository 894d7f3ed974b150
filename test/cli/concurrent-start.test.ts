// Two `start` commands launched together on one DATA_DIR: one serves on the bundled
// PostgreSQL, the other is refused in one line, and neither stops the other's server.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';

let parent: string;
const children: Array<ReturnType<typeof spawn>> = [];

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-concurrent-start-'));
  await chmod(parent, 0o755);
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(
    children.map((child) =>
      child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined,
    ),
  );
  await rm(parent, { recursive: true, force: true });
});

function start(dataDir: string, port: number) {
  const child = spawn(process.execPath, ['bin/fixwright.js', 'start'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
    },
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { child, port, output: () => ({ stdout, stderr }) };
}

async function healthy(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
  } catch {
    return false;
  }
}

it('serves from one start and refuses the other', async () => {
  const dataDir = path.join(parent, 'data');
  const runs = [start(dataDir, await findFreePort()), start(dataDir, await findFreePort())];

  const deadline = Date.now() + 45_000;
  let winner: (typeof runs)[number] | undefined;
  let loser: (typeof runs)[number] | undefined;
  while (Date.now() < deadline && !(winner && loser)) {
    loser = runs.find((run) => run.child.exitCode !== null);
    winner = undefined;
    for (const run of runs) if (run !== loser && (await healthy(run.port))) winner = run;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  expect(loser?.child.exitCode).toBe(1);
  expect(winner).toBeDefined();
  const errorLines = loser!.output().stderr.trim().split('\n');
  expect(errorLines).toHaveLength(1);
  expect(errorLines[0]).toContain('is already run by another Fixwright process');
  const logs = runs.map((run) => run.output().stdout).join('');
  expect(logs).not.toContain('bundled_postgres.orphan_stopped');
  expect(await healthy(winner!.port)).toBe(true);
}, 60_000);
