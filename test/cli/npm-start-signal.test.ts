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
import { healthy, processPids, waitFor } from '../helpers/process.ts';

let parent: string;

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-npm-signal-'));
  await chmod(parent, 0o755);
});

afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

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

it('stops cleanly on a terminal Ctrl-C', async () => {
  // A terminal sends SIGINT to every process of the foreground group, npm and node, and npm
  // forwards its copy to node as well, so node gets the one keypress twice.
  const dataDir = path.join(parent, 'ctrl-c');
  const port = await findFreePort();
  const npm = spawn('npm', ['start'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', DATA_DIR: dataDir, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  npm.stdout!.on('data', (chunk) => (output += chunk));
  npm.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  const ownerFile = path.join(dataDir, 'bundled-postgres.owner');
  const clusterDir = path.join(dataDir, 'postgres');
  let node: number | undefined;
  try {
    await waitFor(async () => ((await healthy(port)) ? true : undefined), {
      timeoutMs: 40_000,
      describe: () => `the service on port ${port} to answer /healthz; output:\n${output}`,
    });
    node = Number(readFileSync(ownerFile, 'utf8').split('\n')[0]);

    npm.kill('SIGINT');
    process.kill(node, 'SIGINT');
    const code = await exited;

    expect(code, output).toBe(0);
    expect(output).not.toContain('"event":"service.forced_exit"');
    expect(output).toContain('"event":"service.stopped"');
    await waitFor(async () => (!existsSync(ownerFile) ? true : undefined), {
      timeoutMs: 10_000,
      describe: () => `the owner file of the bundled PostgreSQL to be removed; output:\n${output}`,
    });
    expect(await processPids('postgres', ['-D', clusterDir])).toEqual([]);
  } finally {
    if (npm.exitCode === null) npm.kill('SIGKILL');
    for (const pid of await processPids('postgres', ['-D', clusterDir])) process.kill(pid, 'SIGINT');
    if (node !== undefined) {
      try {
        process.kill(node, 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
  }
}, 60_000);
