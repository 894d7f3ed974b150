import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openBundledPostgres, type BundledPostgres } from '../../src/db/bundled.ts';
import { ConfigError } from '../../src/config/env.ts';
import { StartupError } from '../../src/errors/startup-error.ts';
import { createLogger } from '../../src/logger.ts';
import { processStartTime } from '../../src/process-alive.ts';
import { waitFor } from '../helpers/process.ts';

const logger = createLogger('silent');
let dataDir: string;
const opened: BundledPostgres[] = [];

async function open() {
  const bundled = await openBundledPostgres({ dataDir, port: 0, logger });
  opened.push(bundled);
  return bundled;
}

function ownerFile(): string {
  return path.join(dataDir, 'bundled-postgres.owner');
}

/** Returns the pid on the first line of the cluster's postmaster.pid. */
function postmasterPid(): number {
  return Number(readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

async function select(url: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`SELECT 1 AS one`;
    return row!.one as number;
  } finally {
    await sql.end();
  }
}

beforeAll(async () => {
  const parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-bundled-'));
  await chmod(parent, 0o755);
  dataDir = path.join(parent, 'data');
});

// A test that failed may have left an owner file that the next test would take for a live owner.
beforeEach(async () => {
  await rm(ownerFile(), { force: true });
});

afterAll(async () => {
  for (const bundled of opened.reverse()) await bundled.stop().catch(() => {});
  await rm(path.dirname(dataDir), { recursive: true, force: true });
});

describe('openBundledPostgres', () => {
  it('reuses the server a live process owns', async () => {
    const first = await open();
    const second = await open();
    expect(first.owned).toBe(true);
    expect(second.owned).toBe(false);
    expect(second.url).toBe(first.url);
    expect(await select(second.url)).toBe(1);
    await second.stop();
    expect(await select(first.url)).toBe(1);
    await first.stop();
  });

  it('keeps a server whose starter still runs', async () => {
    const first = await open();
    // A pid far above the kernel's default pid_max stands for an exited process.
    await writeFile(ownerFile(), '99999999\n');
    const rejected = open();
    await expect(rejected).rejects.toThrow(StartupError);
    await expect(rejected).rejects.toThrow(
      `The bundled PostgreSQL in ${dataDir} (pid ${postmasterPid()}) was started by process ` +
        `${process.pid}, which still runs, but ${ownerFile()} does not name it; stop process ` +
        `${process.pid}, then run this command again.`,
    );
    expect(await select(first.url)).toBe(1);
    await first.stop();
  });

  it('keeps an owner file naming another process', async () => {
    const bundled = await open();
    expect((await readFile(ownerFile(), 'utf8')).split('\n')[0]).toBe(String(process.pid));
    await writeFile(ownerFile(), '99999999\n');
    await bundled.stop();
    expect(await readFile(ownerFile(), 'utf8')).toBe('99999999\n');
    await rm(ownerFile());
  });

  it('rejects a live owner without a server', async () => {
    // The vitest process that runs this file stands for a service whose server stopped.
    const ownerPid = process.ppid;
    await writeFile(ownerFile(), `${ownerPid}\n${processStartTime(ownerPid)}\n`);
    const rejected = open();
    await expect(rejected).rejects.toThrow(StartupError);
    await expect(rejected).rejects.toThrow(
      `The bundled PostgreSQL in ${dataDir} is not running, but the Fixwright process that ` +
        `started it (pid ${ownerPid}) still runs; stop that process, then run this command again.`,
    );
    expect(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
    expect(await readFile(ownerFile(), 'utf8')).toBe(`${ownerPid}\n${processStartTime(ownerPid)}\n`);
    await rm(ownerFile());
  });

  it('starts when another process reuses the owner pid', async () => {
    // The pid is alive, but its start time differs from the recorded one.
    await writeFile(ownerFile(), `${process.ppid}\n1\n`);
    const bundled = await open();
    expect(bundled.owned).toBe(true);
    expect(await select(bundled.url)).toBe(1);
    expect(await readFile(ownerFile(), 'utf8')).toBe(`${process.pid}\n${processStartTime(process.pid)}\n`);
    await bundled.stop();
    expect(existsSync(ownerFile())).toBe(false);
  });

  it('ignores a stale pid of another cluster\'s server', async () => {
    // The cluster exists and is stopped, as after a crash that left its postmaster.pid.
    await (await open()).stop();
    const other = await openBundledPostgres({ dataDir: path.join(path.dirname(dataDir), 'other'), port: 0, logger });
    opened.push(other);
    const otherLockFile = path.join(path.dirname(dataDir), 'other', 'postgres', 'postmaster.pid');
    const otherPid = Number((await readFile(otherLockFile, 'utf8')).split('\n')[0]);
    await writeFile(path.join(dataDir, 'postgres', 'postmaster.pid'), await readFile(otherLockFile, 'utf8'));

    const bundled = await open();

    expect(bundled.owned).toBe(true);
    expect(postmasterPid()).not.toBe(otherPid);
    expect(await select(bundled.url)).toBe(1);
    expect(await select(other.url)).toBe(1);
    await bundled.stop();
    await other.stop();
  });

  it('keeps the server out of the terminal process group', async () => {
    const bundled = await open();
    const lockFile = await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8');
    const pid = Number(lockFile.split('\n')[0]);
    const groupOf = async (target: number | 'self') => {
      const stat = await readFile(`/proc/${target}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    };
    // Ctrl-C signals the terminal's foreground group; the server leads a group of its own.
    expect(await groupOf(pid)).toBe(pid);
    expect(await groupOf('self')).not.toBe(pid);
    await bundled.stop();
  });

  it('takes a stale start lock', async () => {
    // The vitest process is alive, but its start time differs from the recorded one, as when
    // a process that held the lock died and its pid went to another.
    const startLock = path.join(dataDir, 'bundled-postgres.lock');
    await mkdir(dataDir, { recursive: true });
    await writeFile(startLock, `${process.ppid}\n1\n`);
    const waited: unknown[] = [];
    const watching = createLogger(
      'info',
      new Writable({
        write(chunk, _encoding, done) {
          if (String(chunk).includes('bundled_postgres.waiting')) waited.push(String(chunk));
          done();
        },
      }),
    );
    const bundled = await openBundledPostgres({ dataDir, port: 0, logger: watching });
    opened.push(bundled);

    expect(bundled.owned).toBe(true);
    expect(waited).toEqual([]);
    expect(existsSync(startLock)).toBe(false);
    await bundled.stop();
  });

  it('starts despite a lock file naming another live process', async () => {
    const lockFile = path.join(dataDir, 'postgres', 'postmaster.pid');
    // pid 1 is alive but not PostgreSQL, as after a container restart.
    await writeFile(lockFile, `1\n${path.join(dataDir, 'postgres')}\n0\n5999\n`);
    const bundled = await open();
    expect(bundled.owned).toBe(true);
    expect(await select(bundled.url)).toBe(1);
    await bundled.stop();
  });

  it('logs a server that exits on its own', async () => {
    const lines: Record<string, unknown>[] = [];
    const recording = createLogger(
      'info',
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
          done();
        },
      }),
    );
    const exitLines = () => lines.filter((line) => line.event === 'bundled_postgres.exited');
    const stopLines = () => lines.filter((line) => line.event === 'bundled_postgres.stopped');

    const stopped = await openBundledPostgres({ dataDir, port: 0, logger: recording });
    opened.push(stopped);
    await stopped.stop();
    expect(exitLines()).toEqual([]);
    expect(stopLines()).toHaveLength(1);

    const killed = await openBundledPostgres({ dataDir, port: 0, logger: recording });
    opened.push(killed);
    const pid = postmasterPid();
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => exitLines().length > 0, {
      timeoutMs: 10_000,
      describe: () => `the bundled_postgres.exited line after killing pid ${pid}`,
    });

    const [line] = exitLines();
    expect(exitLines()).toHaveLength(1);
    expect(line!.level).toBe(50);
    expect(line!.pid).toBe(pid);
    expect(line!.signal).toBe('SIGKILL');
    expect(line!.code).toBeNull();
    expect(line!.dataDir).toBe(path.join(dataDir, 'postgres'));
    expect(line!.msg).toContain('restart Fixwright');
    await killed.stop();
    expect(exitLines()).toHaveLength(1);
    // The server had exited, so the stop does not claim to have stopped it.
    expect(stopLines()).toHaveLength(1);
    expect(existsSync(ownerFile())).toBe(false);
  });
});

describe.runIf(process.getuid?.() === 0)('openBundledPostgres as root', () => {
  it('rejects a DATA_DIR that postgres cannot enter', async () => {
    const closed = await mkdtemp(path.join(os.tmpdir(), 'fixwright-closed-'));
    try {
      await chmod(closed, 0o700);
      const inside = path.join(closed, 'data');
      const opening = openBundledPostgres({ dataDir: inside, port: 0, logger });
      await expect(opening).rejects.toThrow(ConfigError);
      await expect(opening).rejects.toThrow(
        `The bundled PostgreSQL cannot use ${inside}: Fixwright runs as root, so PostgreSQL ` +
          `runs as the user "postgres", which cannot enter ${closed} (mode 0700). Set ` +
          'DATA_DIR to a folder whose parent folders others may enter, such as ' +
          '/var/lib/fixwright, run Fixwright as another user, or set DATABASE_URL.',
      );
      // The check runs before DATA_DIR, its generated password or its cluster is created.
      expect(existsSync(inside)).toBe(false);
    } finally {
      await rm(closed, { recursive: true, force: true });
    }
  });
});
