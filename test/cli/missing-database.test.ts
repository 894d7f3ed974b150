// The users and keys commands work on the database of an existing service. On a DATA_DIR without
// a bundled database they exit 2 and create nothing, so a command run from another folder than
// `npm start` cannot set up a second database of its own. `migrate` still creates one.
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopLeftoverPostgres } from '../../src/demo/service-process.ts';
import { cliEnv, runCliToExit } from '../helpers/process.ts';

let parent: string;

beforeAll(async () => {
  // realpath, because a command resolves the default ./data against its real working folder.
  parent = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fixwright-missing-database-')));
  // Under root, the bundled PostgreSQL runs as "postgres", which must enter the data folder.
  await chmod(parent, 0o755);
});

afterAll(async () => {
  // Each command stops the bundled PostgreSQL it started, unless a timeout killed it.
  for (const name of await readdir(parent)) await stopLeftoverPostgres(path.join(parent, name));
  await rm(parent, { recursive: true, force: true });
});

/** Returns the stderr of a command that found no database in `dataDir`. */
function missingDatabase(dataDir: string, command: string): string {
  return (
    `No Fixwright database in DATA_DIR ${dataDir}, and "fixwright ${command}" does not create ` +
    'one. Run it from the folder where you run "npm start" (DATA_DIR defaults to ./data in the ' +
    'current folder), or set DATA_DIR to the data folder of that service or DATABASE_URL to ' +
    `its database. To set up a new database in ${dataDir}, run "npx fixwright migrate" with ` +
    'this DATA_DIR first.\n'
  );
}

const commands: string[][] = [
  ['users', 'token', '--login', 'Codertocat'],
  ['users', 'token', '--login', 'Codertocat', '--create'],
  ['users', 'plan', '--login', 'Codertocat', '--plan', 'pro'],
  ['users', 'apply-limits'],
  ['users', 'reset-usage', '--login', 'Codertocat'],
  ['users', 'show', '--login', 'Codertocat'],
  ['users', 'reset-admin', '--login', 'Codertocat'],
  ['keys', 'rotate'],
  ['keys', 'discard', '--version', '1'],
];

describe('command on a DATA_DIR without a database', () => {
  for (const args of commands) {
    const command = args.slice(0, 2).join(' ');
    it(`${args.join(' ')} exits 2 and creates nothing`, async () => {
      const dataDir = path.join(parent, args.join('-'));

      const result = await runCliToExit(args, cliEnv({ DATA_DIR: dataDir }), { timeoutMs: 30_000 });

      expect(result.code).toBe(2);
      expect(result.stderr).toBe(missingDatabase(dataDir, command));
      expect(result.stdout).toBe('');
      expect(existsSync(dataDir)).toBe(false);
    });
  }

  it('names a DATA_DIR that is a file', async () => {
    const dataDir = path.join(parent, 'a-file');
    await writeFile(dataDir, '');

    const result = await runCliToExit(['users', 'show', '--login', 'Codertocat'], cliEnv({ DATA_DIR: dataDir }), {
      timeoutMs: 30_000,
    });

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Invalid DATA_DIR "${dataDir}": ${dataDir} exists and is not a directory. Set DATA_DIR to a ` +
        'directory this user can write to, or to a path where it can be created.\n',
    );
    expect(result.stdout).toBe('');
  });

  it('leaves an empty DATA_DIR empty', async () => {
    const dataDir = path.join(parent, 'empty');
    await mkdir(dataDir);

    const result = await runCliToExit(['users', 'token', '--login', 'Codertocat'], cliEnv({ DATA_DIR: dataDir }), {
      timeoutMs: 30_000,
    });

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(missingDatabase(dataDir, 'users token'));
    expect(await readdir(dataDir)).toEqual([]);
  });

  it('names the default ./data of another folder', async () => {
    const folder = path.join(parent, 'docs');
    await mkdir(folder);

    const result = await runCliToExit(['users', 'token', '--login', 'Codertocat'], cliEnv({}), {
      timeoutMs: 30_000,
      cwd: folder,
    });

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(missingDatabase(path.join(folder, 'data'), 'users token'));
    expect(result.stdout).toBe('');
    expect(await readdir(folder)).toEqual([]);
  });
});

describe('migrate on a DATA_DIR without a database', () => {
  it('creates one that users commands use', async () => {
    const dataDir = path.join(parent, 'migrated');
    const env = cliEnv({ DATA_DIR: dataDir });

    const migrate = await runCliToExit(['migrate'], env, { timeoutMs: 90_000 });
    const token = await runCliToExit(['users', 'token', '--login', 'Codertocat', '--create'], env, {
      timeoutMs: 30_000,
    });

    expect(migrate.code, migrate.stderr).toBe(0);
    expect(migrate.stdout).toMatch(/^Applied \d+ migrations\.\n$/);
    const warnings = migrate.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { event: string; dataDir: string });
    expect(warnings.map((warning) => warning.event)).toEqual(['command.database_created']);
    expect(warnings[0]!.dataDir).toBe(dataDir);
    expect(existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);

    expect(token.code, token.stderr).toBe(0);
    expect(token.stderr).toBe(
      'Created user Codertocat; their installations link to it on the next installation event.\n' +
        'Personal access token for Codertocat (shown once; store it now):\n',
    );
    expect(token.stdout).toMatch(/^fxw_\S+\n$/);
  }, 120_000);
});
