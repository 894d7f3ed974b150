import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { offlineBaseUrls } from './offline-urls.ts';

/** Polls `probe` until it returns a truthy value, and returns that value. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | null | false>,
  options: { timeoutMs: number; intervalMs?: number; describe: () => string },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
  throw new Error(
    `Timed out after ${options.timeoutMs} ms waiting for ${options.describe()}` +
      (lastError ? `\nLast error: ${String(lastError)}` : ''),
  );
}

/** Runs `fixwright ARGS` as `npx fixwright` would; rejects on a non-zero exit with its output. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/fixwright.js', ...args], { env, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`fixwright ${args.join(' ')} exited with ${code}:\n${stderr}${stdout}`));
    });
  });
}

/** Path of the `fixwright` program, which commands run from another folder need. */
const cliPath = path.resolve(import.meta.dirname, '../../bin/fixwright.js');

/**
 * Runs `fixwright ARGS` to its exit and returns the exit code and output, whatever the code.
 * With `timeoutMs`, kills it with SIGKILL after that long and rejects with its output. `cwd`
 * is the folder it runs in, the test's own by default.
 */
export function runCliToExit(
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env, stdio: 'pipe', cwd: options.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill('SIGKILL');
            reject(
              new Error(
                `fixwright ${args.join(' ')} did not exit within ${options.timeoutMs} ms:\n${stderr}${stdout}`,
              ),
            );
          }, options.timeoutMs);
    child.once('error', reject);
    // 'close', unlike 'exit', fires after stdout and stderr have been read to the end.
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Returns the pids of processes whose program file is named `program` and whose arguments
 * contain `args` in a row, read from /proc/PID/cmdline. Returns [] without /proc (macOS).
 */
export async function processPids(program: string, args: string[]): Promise<number[]> {
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const commandLine = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const words = commandLine.split('\0');
    if (path.basename(words[0] ?? '') !== program) continue;
    const found = words.some((_, start) => args.every((arg, offset) => words[start + offset] === arg));
    if (found) pids.push(Number(entry));
  }
  return pids;
}

/** Returns whether GET /healthz on 127.0.0.1:`port` returns 200. */
export async function healthy(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
  } catch {
    return false;
  }
}

/**
 * Returns the environment of a `fixwright` command run by a test: where programs, home and
 * temporary files are, the test settings, a free port on 127.0.0.1, and `extra` on top.
 */
export function cliEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: '0',
    ...offlineBaseUrls,
    ...extra,
  };
}

/** How a child process ended: its exit code, or the signal that ended it. */
export type ChildExit = { code: number | null; signal: NodeJS.Signals | null };

export interface CliProcess {
  child: ChildProcess;
  /** Everything the command wrote to stdout and stderr so far. */
  output(): string;
  /** Polls `probe` every 5 ms until it is true, failing when the command exits first. */
  waitUntil(probe: () => boolean | Promise<boolean>, describe: string): Promise<void>;
  /** Waits up to 60 s for the exit and returns it. */
  exit(): Promise<ChildExit>;
  /** Kills the command with SIGKILL unless it has exited, as a clean-up after a failed check. */
  kill(): void;
}

/** Spawns `fixwright ARGS` as `npx fixwright` would and returns helpers to probe and await it. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv): CliProcess {
  const child = spawn(process.execPath, ['bin/fixwright.js', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  // 'close', unlike 'exit', fires after the output has been read to the end.
  const closed = new Promise<ChildExit>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );

  return {
    child,
    output: () => output,
    async waitUntil(probe, describe) {
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`the command exited with ${child.exitCode}`);
          return probe();
        },
        { timeoutMs: 60_000, intervalMs: 5, describe: () => `${describe}; output:\n${output}` },
      );
    },
    async exit() {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the command did not exit within 60 s; output:\n${output}`)),
          60_000,
        );
      });
      try {
        return await Promise.race([closed, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export interface ScriptOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/**
 * Runs a TypeScript script with tsx from the repository root, killing it after `killAfterMs`,
 * and returns its exit code, output and run time. Without `env` the child gets only `PATH`,
 * `HOME` and `TMPDIR`.
 */
export function runTsxScript(
  scriptPath: string,
  args: string[],
  options: { killAfterMs: number; env?: NodeJS.ProcessEnv },
): Promise<ScriptOutcome> {
  const env = options.env ?? {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
  };
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', scriptPath, ...args], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, elapsedMs: Date.now() - started });
    });
  });
}
