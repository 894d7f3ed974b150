import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isProcessAlive } from '../process-alive.ts';

/** Root of the package, where `bin/fixwright.js` is. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cliPath = path.join(packageRoot, 'bin', 'fixwright.js');

/** Lines of service output kept for error messages. */
const keptOutputLines = 200;

export interface DemoService {
  url: string;
  pid: number;
  /** The last lines the service wrote to stdout and stderr. */
  recentOutput(): string;
  /** Resolves with a description when the process exits, whether asked to or not. */
  exited: Promise<string>;
  /** Sends SIGTERM, waits up to `timeoutMs` for the exit, then sends SIGKILL. */
  stop(timeoutMs?: number): Promise<void>;
}

/** Returns a free TCP port on 127.0.0.1. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * Starts `fixwright start` with `env` as its whole environment, and appends its stdout and
 * stderr to the file `logPath`. The process gets its own process group, so a Ctrl-C in the
 * terminal reaches only the demo, which then stops the service once instead of the service
 * seeing two signals and exiting without stopping its PostgreSQL.
 */
export function spawnService(env: NodeJS.ProcessEnv, url: string, logPath: string): DemoService {
  const child: ChildProcess = spawn(process.execPath, [cliPath, 'start'], {
    cwd: packageRoot,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(logPath, { flags: 'a', mode: 0o600 });
  // A log file that cannot be written must not stop the demo, because recentOutput keeps the lines.
  log.on('error', () => {});
  const lines: string[] = [];
  let partial = '';
  const keep = (chunk: Buffer) => {
    log.write(chunk);
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (lines.length > keptOutputLines) lines.splice(0, lines.length - keptOutputLines);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);

  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(`failed to start: ${error.message}`));
    child.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`));
  });
  void exited.then(() => log.end());
  const running = () => child.exitCode === null && child.signalCode === null;

  return {
    url,
    pid: child.pid ?? 0,
    recentOutput: () => [...lines, partial].filter(Boolean).join('\n'),
    exited,
    async stop(timeoutMs = 30_000) {
      if (!running()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (running()) child.kill('SIGKILL');
      }, timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs `fixwright ARGS` to completion and returns its standard output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd: packageRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`fixwright ${args.join(' ')} failed with exit code ${code}: ${stderr.trim()}`));
    });
  });
}

/**
 * Returns the pid of the bundled PostgreSQL that runs on `dataDir`, from the first line of
 * its `postmaster.pid`, or undefined when no live `postgres` process is recorded there.
 */
export function bundledPostgresPid(dataDir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid)) return undefined;
  // A stale lock file can name a pid that another program reuses now.
  let command: string | undefined;
  try {
    command = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    command = undefined;
  }
  return command === undefined || command === 'postgres' ? pid : undefined;
}

/**
 * Stops a bundled PostgreSQL left running on `dataDir` (its service was killed or crashed)
 * with a fast shutdown, and waits up to `timeoutMs` for it to exit. Returns false when it
 * is still running after that.
 */
export async function stopLeftoverPostgres(dataDir: string, timeoutMs = 30_000): Promise<boolean> {
  const pid = bundledPostgresPid(dataDir);
  if (pid === undefined) return true;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return !isProcessAlive(pid);
}

/**
 * Returns the pids of processes whose command line contains `folder`, read from /proc. An
 * initdb that the service started is one: it runs on after the service dies from a signal that
 * arrived before the service installed its handlers. Returns [] without /proc (macOS).
 */
export function processesUsingFolder(folder: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (commandLine.includes(folder) && isProcessAlive(Number(entry))) pids.push(Number(entry));
    } catch {
      // The process exited while the list was read.
    }
  }
  return pids;
}
