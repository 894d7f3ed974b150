import { readlink, readFile, rm, writeFile } from 'node:fs/promises';
import { isProcessAlive, parentPid, processStartTime } from '../process-alive.ts';

/**
 * The Fixwright process that started the bundled PostgreSQL and stops it when it exits, as
 * `DATA_DIR/bundled-postgres.owner` records it: the pid on the first line and, where /proc
 * exists, the process start time on the second.
 */
export interface ServerOwner {
  pid: number;
  /** Clock ticks after boot, from /proc/PID/stat; undefined in files written without /proc. */
  startTime?: string;
}

/** Reads the owner file, or returns undefined when it is missing or names no pid. */
export async function readOwner(ownerFile: string): Promise<ServerOwner | undefined> {
  let text: string;
  try {
    text = await readFile(ownerFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const [pidLine = '', startTimeLine = ''] = text.split('\n');
  const pid = Number(pidLine.trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, startTime: startTimeLine.trim() || undefined };
}

/**
 * Tells whether the recorded owner still runs. When the file and /proc give start times, they
 * must match, so a process that reuses the pid after a crash or a reboot is not the owner.
 */
export function isOwnerAlive(owner: ServerOwner): boolean {
  if (!isProcessAlive(owner.pid)) return false;
  if (owner.startTime === undefined) return true;
  const startTime = processStartTime(owner.pid);
  return startTime === undefined || startTime === owner.startTime;
}

/**
 * Records this process as the owner. The caller holds the start lock and has checked that the
 * file names no other live process.
 */
export async function writeOwnFile(ownerFile: string): Promise<void> {
  await writeFile(ownerFile, ownRecord(), { mode: 0o600 });
}

/** Returns this process's pid and, where /proc exists, its start time, one a line. */
export function ownRecord(): string {
  const startTime = processStartTime(process.pid);
  return startTime === undefined ? `${process.pid}\n` : `${process.pid}\n${startTime}\n`;
}

/**
 * Removes the owner file when it names this process. A file that names another process
 * records a server that process started, so it is kept.
 */
export async function removeOwnFile(ownerFile: string): Promise<void> {
  const owner = await readOwner(ownerFile);
  if (owner?.pid === process.pid) await rm(ownerFile, { force: true });
}

/**
 * Returns the pid of the postmaster's parent when that parent is not pid 1 and runs the same
 * program as this process (node). A process that spawns a server stays its parent until it
 * exits, and then the kernel hands the server to pid 1 or to a subreaper such as
 * `systemd --user`. Such a parent is therefore the Fixwright process that started the server,
 * still running. Returns undefined without /proc, or when the parent's program is unreadable.
 */
export async function findRunningStarter(postmasterPid: number): Promise<number | undefined> {
  const parent = parentPid(postmasterPid);
  if (parent === undefined || parent <= 1) return undefined;
  const [parentProgram, ownProgram] = await Promise.all([
    readlink(`/proc/${parent}/exe`).catch(() => undefined),
    readlink('/proc/self/exe').catch(() => undefined),
  ]);
  if (parentProgram === undefined || parentProgram !== ownProgram) return undefined;
  return parent;
}
