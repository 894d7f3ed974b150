// `fixwright start | head -1` closes the service's stdout pipe after one line. Every later log
// write then fails with EPIPE, which must neither end the service nor change its exit code.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { stopLeftoverPostgres } from '../../src/demo/service-process.ts';
import { serviceEnv } from '../helpers/service.ts';
import { healthy, waitFor } from '../helpers/process.ts';

let parent: string;
const dataDirs: string[] = [];

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-log-pipe-'));
  // Under root, the bundled PostgreSQL runs as "postgres", which must enter the data folder.
  await chmod(parent, 0o755);
});

afterAll(async () => {
  for (const dataDir of dataDirs) await stopLeftoverPostgres(dataDir);
  await rm(parent, { recursive: true, force: true });
});

// The first log line comes before the bundled PostgreSQL starts, so the pipe breaks during the
// start. After `service.started`, the first failed write is the `service.stopping` line.
it.each([
  ['first log line', '"level"'],
  ['service.started', '"event":"service.started"'],
])('start survives stdout closed after %s', async (_, marker) => {
  const dataDir = path.join(parent, marker.replace(/\W+/g, '-'));
  dataDirs.push(dataDir);
  const port = await findFreePort();
  const child = spawn(process.execPath, ['bin/fixwright.js', 'start'], {
    env: serviceEnv({ DATA_DIR: dataDir }, port),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  // Closing the read end, as `head` does when it exits, breaks the pipe.
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
    if (stdout.includes(marker)) child.stdout.destroy();
  });
  const ownerFile = path.join(dataDir, 'bundled-postgres.owner');
  try {
    // Stops waiting when the service exits, so the checks below show its stderr.
    await waitFor(async () => child.exitCode !== null || (await healthy(port)), {
      timeoutMs: 25_000,
      describe: () => `the service on port ${port} to answer /healthz; stderr:\n${stderr}`,
    });
    expect(stderr).not.toContain('EPIPE');
    expect(child.exitCode).toBeNull();
    expect(await healthy(port)).toBe(true);
    expect(child.stdout.destroyed).toBe(true);
    expect(existsSync(ownerFile)).toBe(true);

    child.kill('SIGTERM');
    const exit = await exited;
    expect(stderr).not.toContain('EPIPE');
    expect(exit.signal).toBeNull();
    expect(exit.code).toBe(0);
    expect(existsSync(ownerFile)).toBe(false);
    expect(await healthy(port)).toBe(false);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});
