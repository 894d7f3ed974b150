// A supervisor that signals the `npm start` process, not the node process under it, must stop
// the service and its bundled PostgreSQL too. npm runs the script through `sh -c`, which does
// not pass signals on, so the script execs node in its place.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { waitFor } from '../helpers/process.ts';

let parent: string;

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-npm-signal-'));
  await chmod(parent, 0o755);
});

afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

async function healthy(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
  } catch {
    return false;
  }
}

it.each(['SIGTERM', 'SIGINT'] as const)('stops everything on %s to npm', async (signal) => {
  const dataDir = path.join(parent, signal);
  const port = await findFreePort();
  const npm = spawn('npm', ['start'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', DATA_DIR: dataDir, PORT: String(port) },
    stdio: 'ignore',
  });
  const exited = new Promise((resolve) => npm.once('exit', resolve));
  const ownerFile = path.join(dataDir, 'bundled-postgres.owner');
  try {
    await waitFor(async () => ((await healthy(port)) ? true : undefined), {
      timeoutMs: 40_000,
      describe: () => `the service on port ${port} to answer /healthz`,
    });
    expect(existsSync(ownerFile)).toBe(true);

    npm.kill(signal);
    await exited;
    await waitFor(async () => (!(await healthy(port)) && !existsSync(ownerFile) ? true : undefined), {
      timeoutMs: 10_000,
      describe: () => 'the service to stop and remove the owner file of its PostgreSQL',
    });
    expect(await healthy(port)).toBe(false);
  } finally {
    if (npm.exitCode === null) npm.kill('SIGKILL');
    // Should the service outlive npm, stop it by the pid on the owner file's first line, so no
    // process leaks.
    if (existsSync(ownerFile)) {
      try {
        process.kill(Number(readFileSync(ownerFile, 'utf8').split('\n')[0]), 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
  }
}, 60_000);
