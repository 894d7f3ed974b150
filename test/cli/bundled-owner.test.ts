// The owner file `DATA_DIR/bundled-postgres.owner` names the `fixwright start` that runs the
// bundled PostgreSQL. These tests run real services and commands on one DATA_DIR. They check
// that no command or start takes a live service's database, neither when that service's
// PostgreSQL stopped on its own nor when the owner file no longer names the service. The
// server of a killed service is stopped.
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { bundledPostgresPid, stopLeftoverPostgres } from '../../src/demo/service-process.ts';
import { isProcessAlive } from '../../src/process-alive.ts';
import { cliEnv, runCliToExit, waitFor } from '../helpers/process.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

let parent: string;
const services: ServiceProcess[] = [];
const dataDirs: string[] = [];

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-bundled-owner-'));
  // Under root, the bundled PostgreSQL runs as "postgres", which must enter the data folder.
  await chmod(parent, 0o755);
});

afterAll(async () => {
  for (const service of services) await service.stop('SIGKILL').catch(() => {});
  for (const dataDir of dataDirs) await stopLeftoverPostgres(dataDir);
  await rm(parent, { recursive: true, force: true });
});

function newDataDir(name: string): string {
  const dataDir = path.join(parent, name);
  dataDirs.push(dataDir);
  return dataDir;
}

async function startService(dataDir: string): Promise<ServiceProcess> {
  const service = await startServiceProcess({ DATA_DIR: dataDir });
  services.push(service);
  return service;
}

/** Returns the pid on the first line of the owner file, or undefined when there is no file. */
async function ownerPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'bundled-postgres.owner'), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : Number(text.split('\n')[0]);
}

function showNobody(dataDir: string) {
  return runCliToExit(['users', 'show', '--login', 'nobody'], cliEnv({ DATA_DIR: dataDir }), {
    timeoutMs: 60_000,
  });
}

async function startToExit(dataDir: string) {
  const env = cliEnv({ DATA_DIR: dataDir, PORT: String(await findFreePort()) });
  return runCliToExit(['start'], env, { timeoutMs: 60_000 });
}

async function healthStatus(service: ServiceProcess): Promise<number> {
  return (await fetch(`${service.url}/healthz`)).status;
}

const notFound =
  'User "nobody" not found. Users appear when they install the app or sign in, or create one ' +
  'with "fixwright users token --login nobody --create".\n';

describe('owner whose PostgreSQL stopped', () => {
  it('rejects commands and starts until it exits', async () => {
    const dataDir = newDataDir('stopped-server');
    const first = await startService(dataDir);
    const firstPid = first.process.pid!;
    expect(await ownerPid(dataDir)).toBe(firstPid);

    const postgresPid = bundledPostgresPid(dataDir)!;
    expect(postgresPid).toBeGreaterThan(0);
    // A service stops itself once its PostgreSQL exits. Paused, it stays the live owner of a
    // stopped server, as it is between the server's exit and its own.
    process.kill(firstPid, 'SIGSTOP');
    process.kill(postgresPid, 'SIGKILL');
    await waitFor(async () => !isProcessAlive(postgresPid), {
      timeoutMs: 10_000,
      describe: () => `PostgreSQL pid ${postgresPid} to exit`,
    });

    const stoppedMessage =
      `The bundled PostgreSQL in ${dataDir} is not running, but the Fixwright process that ` +
      `started it (pid ${firstPid}) still runs; stop that process, then run this command again.\n`;
    const command = await showNobody(dataDir);
    expect(command.code).toBe(1);
    expect(command.stderr).toBe(stoppedMessage);
    expect(bundledPostgresPid(dataDir)).toBeUndefined();
    expect(await ownerPid(dataDir)).toBe(firstPid);

    const second = await startToExit(dataDir);
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(stoppedMessage);
    expect(second.stdout).not.toContain('"event":"bundled_postgres.started"');
    expect(bundledPostgresPid(dataDir)).toBeUndefined();
    expect(await ownerPid(dataDir)).toBe(firstPid);

    const exited = new Promise((resolve) => first.process.once('exit', resolve));
    process.kill(firstPid, 'SIGCONT');
    await exited;
    expect(first.process.exitCode).toBe(1);
    expect(await ownerPid(dataDir)).toBeUndefined();

    // With the owner gone, a command starts a server of its own and stops it again.
    const afterExit = await showNobody(dataDir);
    expect(afterExit.code).toBe(1);
    expect(afterExit.stderr).toBe(notFound);
    expect(bundledPostgresPid(dataDir)).toBeUndefined();
    expect(await ownerPid(dataDir)).toBeUndefined();

    const restarted = await startService(dataDir);
    expect(await ownerPid(dataDir)).toBe(restarted.process.pid);
    const reusing = await showNobody(dataDir);
    expect(reusing.code).toBe(1);
    expect(reusing.stderr).toBe(notFound);
    expect(await healthStatus(restarted)).toBe(200);
    expect(await ownerPid(dataDir)).toBe(restarted.process.pid);

    await restarted.stop('SIGTERM');
    expect(restarted.process.exitCode).toBe(0);
    expect(await ownerPid(dataDir)).toBeUndefined();
  }, 120_000);
});

describe('owner whose PostgreSQL is shutting down', () => {
  it('rejects commands in one line', async () => {
    const dataDir = newDataDir('shutting-down');
    const service = await startService(dataDir);
    const postgresPid = bundledPostgresPid(dataDir)!;
    const postmasterFile = path.join(dataDir, 'postgres', 'postmaster.pid');
    const port = Number((await readFile(postmasterFile, 'utf8')).split('\n')[3]);

    // A smart shutdown waits for the service's sessions to end, and until then PostgreSQL
    // rejects new connections. Line 8 of postmaster.pid is the server's state.
    process.kill(postgresPid, 'SIGTERM');
    const serverState = async () => (await readFile(postmasterFile, 'utf8')).split('\n')[7]?.trim();
    await waitFor(async () => (await serverState()) === 'stopping', {
      timeoutMs: 10_000,
      describe: () => `PostgreSQL pid ${postgresPid} to enter its shutdown`,
    });

    const command = await showNobody(dataDir);
    expect(command.code).toBe(1);
    expect(command.stderr).toBe(
      `Cannot connect to the bundled PostgreSQL "postgres://fixwright:***@127.0.0.1:${port}/fixwright" ` +
        `at 127.0.0.1:${port}: the database system is shutting down (SQLSTATE 57P03 ` +
        'cannot_connect_now). PostgreSQL is shutting down or starting up: retry once it has ' +
        'started. A smart shutdown (SIGTERM) waits for every client to disconnect, so stop the ' +
        'processes connected to it, such as "npm start", then start it again.\n',
    );
    expect(command.stdout).toBe('');
    expect(isProcessAlive(postgresPid)).toBe(true);

    // The shutdown ends once the service has closed its connections.
    await service.stop('SIGTERM');
    await waitFor(async () => !isProcessAlive(postgresPid), {
      timeoutMs: 30_000,
      describe: () => `PostgreSQL pid ${postgresPid} to exit`,
    });
  }, 90_000);
});

describe('server not named in the owner file', () => {
  it('keeps the server of a live service', async () => {
    const dataDir = newDataDir('lost-owner-file');
    const service = await startService(dataDir);
    const postgresPid = bundledPostgresPid(dataDir)!;
    await rm(path.join(dataDir, 'bundled-postgres.owner'));

    const command = await showNobody(dataDir);
    expect(command.code).toBe(1);
    expect(command.stderr).toBe(
      `The bundled PostgreSQL in ${dataDir} (pid ${postgresPid}) was started by process ` +
        `${service.process.pid}, which still runs, but ${path.join(dataDir, 'bundled-postgres.owner')} ` +
        `does not name it; stop process ${service.process.pid}, then run this command again.\n`,
    );
    expect(bundledPostgresPid(dataDir)).toBe(postgresPid);
    expect(await healthStatus(service)).toBe(200);
    expect(await ownerPid(dataDir)).toBeUndefined();

    await service.stop('SIGTERM');
    expect(service.process.exitCode).toBe(0);
    expect(bundledPostgresPid(dataDir)).toBeUndefined();
  }, 90_000);

  it('stops the server of a killed service', async () => {
    const dataDir = newDataDir('killed-owner');
    const service = await startService(dataDir);
    const postgresPid = bundledPostgresPid(dataDir)!;
    await service.stop('SIGKILL');
    // SIGKILL leaves the server running and the owner file naming the dead service.
    expect(isProcessAlive(postgresPid)).toBe(true);
    expect(await ownerPid(dataDir)).toBe(service.process.pid);

    const command = await showNobody(dataDir);
    expect(command.code).toBe(1);
    // Commands log warnings as JSON lines on stderr, next to their message.
    const stderrLines = command.stderr.trim().split('\n');
    expect(stderrLines.filter((line) => !line.startsWith('{'))).toEqual([notFound.trim()]);
    const orphanLines = stderrLines.filter((line) =>
      line.includes('"event":"bundled_postgres.orphan_stopped"'),
    );
    expect(orphanLines).toHaveLength(1);
    expect(orphanLines[0]).toContain(`"pid":${postgresPid}`);
    expect(isProcessAlive(postgresPid)).toBe(false);
    expect(bundledPostgresPid(dataDir)).toBeUndefined();
    expect(await ownerPid(dataDir)).toBeUndefined();
    expect(existsSync(path.join(dataDir, 'bundled-postgres.lock'))).toBe(false);
  }, 90_000);
});
