import { readFileSync } from 'node:fs';

/** Tells whether a process with this pid exists and is not a zombie waiting to be reaped. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to another user, as PostgreSQL does under root.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // An exited child not yet reaped still accepts signals, and /proc shows it as a zombie (Z).
  // Without /proc (macOS) a pid that accepts signal 0 is taken to be alive.
  const fields = readProcessStat(pid);
  return fields === undefined || fields[0] !== 'Z';
}

/**
 * Returns the start time of a process in clock ticks after boot (field 22 of /proc/PID/stat),
 * which distinguishes a process from a later one that reuses its pid. Returns undefined
 * without /proc or when no such process exists.
 */
export function processStartTime(pid: number): string | undefined {
  return readProcessStat(pid)?.[19];
}

/** Returns the pid of a process's parent (field 4 of /proc/PID/stat), or undefined without /proc. */
export function parentPid(pid: number): number | undefined {
  const field = readProcessStat(pid)?.[1];
  return field === undefined ? undefined : Number(field);
}

/**
 * Returns the fields of /proc/PID/stat that follow the command name, the state (field 3)
 * first. The command name is skipped by its last ')', since it may contain spaces and ')'.
 */
function readProcessStat(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}
