// One-off commands (migrate, users, keys) interrupted by SIGINT or SIGTERM stop the bundled
// PostgreSQL they started, and no other, and exit with 128 plus the signal number. A second
// signal exits at once with status 1.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBundledPostgres } from '../../src/db/bundled.ts';
import { startupLockId } from '../../src/db/advisory-lock.ts';
import { bundledPostgresPid, stopLeftoverPostgres } from '../../src/demo/service-process.ts';
import { createLogger } from '../../src/logger.ts';
import { isProcessAlive } from '../../src/process-alive.ts';
import { cliEnv, processPids, runCli, runCliToExit, spawnCli, waitFor } from '../helpers/process.ts';

let parent: string;
/** A migrated DATA_DIR, copied for each test so that no test waits for initdb. */
let template: string;
let dataDirs = 0;

/** Logins that start with this make the insert into `users` sleep, which keeps a command in its work. */
const pausedLoginPrefix = 'paused-';

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-command-interrupt-'));
  // Under root, the bundled PostgreSQL runs as "postgres", which must enter the data folder.
  await chmod(parent, 0o755);
  template = path.join(parent, 'template');
  await runCli(['migrate'], cliEnv({ DATA_DIR: template }));
  const bundled = await openBundledPostgres({ dataDir: template, port: 0, logger: createLogger('silent') });
  const sql = postgres(bundled.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`
      CREATE FUNCTION pause_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$;
      CREATE TRIGGER pause_insert BEFORE INSERT ON users FOR EACH ROW
        WHEN (NEW.login LIKE '${pausedLoginPrefix}%') EXECUTE FUNCTION pause_insert();
    `);
  } finally {
    await sql.end();
    await bundled.stop();
  }
}, 120_000);

afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

/** Copies the template to a new DATA_DIR, keeping owners and modes, and returns its path. */
async function copyTemplate(): Promise<string> {
  dataDirs += 1;
  const dataDir = path.join(parent, `data-${dataDirs}`);
  await promisify(execFile)('cp', ['-a', template, dataDir]);
  return dataDir;
}

/** Returns the URL of the bundled PostgreSQL that runs on `dataDir` now. */
async function bundledUrl(dataDir: string, database = 'fixwright'): Promise<string> {
  const { user, password } = JSON.parse(
    await readFile(path.join(dataDir, 'bundled-postgres.json'), 'utf8'),
  ) as { user: string; password: string };
  const lockFile = await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8');
  const port = Number(lockFile.split('\n')[3]);
  return `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/** Returns the number of sessions of the server at `url` that match `condition`. */
async function countSessions(url: string, condition: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    const [row] = await sql.unsafe<{ count: number }[]>(
      `SELECT count(*)::integer AS count FROM pg_stat_activity WHERE ${condition}`,
    );
    return row!.count;
  } finally {
    await sql.end();
  }
}

function interruptedLines(output: string): string[] {
  return output.split('\n').filter((line) => line.includes('"event":"command.interrupted"'));
}

/** Asserts that no PostgreSQL runs on `dataDir` and that its start lock and owner file are gone. */
async function expectNoServer(dataDir: string) {
  expect(await processPids('postgres', ['-D', path.join(dataDir, 'postgres')])).toEqual([]);
  expect(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
  expect(existsSync(path.join(dataDir, 'bundled-postgres.lock'))).toBe(false);
  expect(existsSync(path.join(dataDir, 'bundled-postgres.owner'))).toBe(false);
}

const exitCodes = { SIGINT: 130, SIGTERM: 143 } as const;

const commands = {
  migrate: ['migrate'],
  users: ['users', 'token', '--login', 'octocat'],
  keys: ['keys', 'rotate'],
};

const startCases = Object.keys(commands).flatMap((command) =>
  (['SIGINT', 'SIGTERM'] as const).map((signal) => ({ command: command as keyof typeof commands, signal })),
);

describe('a one-off command interrupted', () => {
  it.each(startCases)('stops its PostgreSQL on $signal while $command starts it', async (testCase) => {
    const { command, signal } = testCase;
    const dataDir = await copyTemplate();
    // The command pauses its start once the server is ready, so the signal cannot come after
    // the command has already stopped its short-lived server. At LOG_LEVEL=debug it would log
    // bundled_postgres.started if the start went on.
    const run = spawnCli(
      commands[command],
      cliEnv({ DATA_DIR: dataDir, LOG_LEVEL: 'debug', FIXWRIGHT_TEST_PAUSE_BUNDLED_START: '1' }),
    );
    try {
      await run.waitUntil(
        () => run.output().includes('"event":"bundled_postgres.start_paused"'),
        'the start of the bundled PostgreSQL to pause',
      );
      // A backend that the server has just forked has the server's command line for a moment,
      // so the server's pid comes from postmaster.pid.
      const serverPid = bundledPostgresPid(dataDir);
      expect(serverPid).toBeDefined();
      process.kill(run.child.pid!, signal);
      const exit = await run.exit();
      const output = run.output();

      expect(exit, output).toEqual({ code: exitCodes[signal], signal: null });
      const lines = interruptedLines(output);
      expect(lines, output).toHaveLength(1);
      expect(lines[0]).toContain(`"signal":"${signal}"`);
      expect(output).not.toContain('"event":"bundled_postgres.started"');
      expect(isProcessAlive(serverPid!)).toBe(false);
      await expectNoServer(dataDir);
    } finally {
      run.kill();
      await stopLeftoverPostgres(dataDir);
    }
  }, 90_000);

  it.each(['SIGINT', 'SIGTERM'] as const)('stops its PostgreSQL on %s during its work', async (signal) => {
    const dataDir = await copyTemplate();
    const login = `${pausedLoginPrefix}${signal.toLowerCase()}`;
    const run = spawnCli(['users', 'token', '--login', login, '--create'], cliEnv({ DATA_DIR: dataDir }));
    let serverPid: number | undefined;
    try {
      await run.waitUntil(async () => {
        serverPid ??= bundledPostgresPid(dataDir);
        if (serverPid === undefined) return false;
        const url = await bundledUrl(dataDir).catch(() => undefined);
        return url !== undefined && (await countSessions(url, "wait_event = 'PgSleep'").catch(() => 0)) === 1;
      }, 'the insert of the user to sleep in its trigger');
      process.kill(run.child.pid!, signal);
      const exit = await run.exit();
      const output = run.output();

      expect(exit, output).toEqual({ code: exitCodes[signal], signal: null });
      expect(interruptedLines(output), output).toHaveLength(1);
      expect(output).not.toContain('Personal access token');
      expect(isProcessAlive(serverPid!)).toBe(false);
      await expectNoServer(dataDir);

      // The insert was rolled back, so the user does not exist.
      const show = await runCliToExit(['users', 'show', '--login', login], cliEnv({ DATA_DIR: dataDir }));
      expect(show.code, show.stderr).toBe(1);
      expect(show.stderr).toContain(`User "${login}" not found`);
    } finally {
      run.kill();
      await stopLeftoverPostgres(dataDir);
    }
  }, 90_000);

  it('leaves a PostgreSQL that another process runs', async () => {
    const dataDir = await copyTemplate();
    // This test process runs the bundled PostgreSQL, as `npm start` would, and holds the
    // start-up lock, so the command waits inside its migrations.
    const bundled = await openBundledPostgres({ dataDir, port: 0, logger: createLogger('silent') });
    const serverPid = bundledPostgresPid(dataDir);
    const sql = postgres(bundled.url, { max: 1, onnotice: () => {} });
    let run: ReturnType<typeof spawnCli> | undefined;
    try {
      await sql`SELECT pg_advisory_lock(${startupLockId})`;
      const advisoryWait = "wait_event_type = 'Lock' AND wait_event = 'advisory'";
      run = spawnCli(['migrate'], cliEnv({ DATA_DIR: dataDir, LOG_LEVEL: 'debug' }));
      await run.waitUntil(
        async () => (await countSessions(bundled.url, advisoryWait)) === 1,
        'the command to wait for the start-up lock',
      );
      process.kill(run.child.pid!, 'SIGTERM');
      const exit = await run.exit();
      const output = run.output();

      expect(exit, output).toEqual({ code: 143, signal: null });
      expect(output).toContain('"event":"bundled_postgres.reused"');
      expect(interruptedLines(output), output).toHaveLength(1);
      expect(output).not.toContain('"event":"bundled_postgres.stopped"');
      expect(output).not.toMatch(/Applied \d+ migration|No migration to apply/);
      expect(serverPid).toBeDefined();
      expect(bundledPostgresPid(dataDir)).toBe(serverPid);
      expect(existsSync(path.join(dataDir, 'bundled-postgres.owner'))).toBe(true);

      // The session that waited for the lock ends once it gets the lock and finds the
      // command gone.
      await sql`SELECT pg_advisory_unlock(${startupLockId})`;
      await waitFor(async () => (await countSessions(bundled.url, advisoryWait)) === 0, {
        timeoutMs: 10_000,
        describe: () => 'the waiting session to end',
      });
      const [{ answer }] = await sql<[{ answer: number }]>`SELECT 1 AS answer`;
      expect(answer).toBe(1);
    } finally {
      run?.kill();
      await sql.end();
      await bundled.stop();
    }
  }, 90_000);

  it('exits at once on a second signal', async () => {
    dataDirs += 1;
    const dataDir = path.join(parent, `data-${dataDirs}`);
    const clusterDir = path.join(dataDir, 'postgres');
    const run = spawnCli(['migrate'], cliEnv({ DATA_DIR: dataDir }));
    try {
      // initdb runs for seconds and the interrupted command waits for it, which leaves time
      // for the second signal.
      await run.waitUntil(
        async () => (await processPids('initdb', [`--pgdata=${clusterDir}`])).length > 0,
        'initdb to start',
      );
      process.kill(run.child.pid!, 'SIGINT');
      await run.waitUntil(() => interruptedLines(run.output()).length === 1, 'the interruption to be logged');
      process.kill(run.child.pid!, 'SIGTERM');
      const exit = await run.exit();
      const output = run.output();

      expect(exit, output).toEqual({ code: 1, signal: null });
      expect(output).toContain('"event":"command.forced_exit"');
      // The initdb that the forced exit left behind must end before the folder is removed.
      await waitFor(async () => (await processPids('initdb', [`--pgdata=${clusterDir}`])).length === 0, {
        timeoutMs: 60_000,
        describe: () => `initdb in ${clusterDir} to exit`,
      });
    } finally {
      run.kill();
      await stopLeftoverPostgres(dataDir);
    }
  }, 90_000);
});
