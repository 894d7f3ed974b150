import { spawn, type ChildProcess } from 'node:child_process';
import { findFreePort } from '../../src/db/bundled.ts';
import { offlineBaseUrls } from './offline-urls.ts';
import { waitFor } from './process.ts';

export interface ServiceProcess {
  url: string;
  process: ChildProcess;
  /** Everything the service wrote to stdout and stderr so far. */
  output(): string;
  /** Sends `signal` and waits for the process to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `fixwright start` as a child process, the way `npm start` does, and waits until
 * /healthz returns 200. HOST is 127.0.0.1, PORT is `port` or a free port chosen here, and `env`
 * supplies everything else.
 */
export async function startServiceProcess(env: NodeJS.ProcessEnv, port?: number): Promise<ServiceProcess> {
  port ??= await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ['bin/fixwright.js', 'start'], {
    env: serviceEnv(env, port),
    stdio: 'pipe',
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));

  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`service exited with ${child.exitCode}`);
        return (await fetch(`${url}/healthz`).catch(() => null))?.ok;
      },
      { timeoutMs: 30_000, describe: () => `service at ${url} to answer /healthz; output:\n${output}` },
    );
  } catch (error) {
    await stop('SIGKILL');
    throw error;
  }
  return { url, process: child, output: () => output, stop };
}

/** Returns the environment of a `fixwright start` child: `env` with the test defaults and PORT. */
export function serviceEnv(env: NodeJS.ProcessEnv, port: number): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    ...offlineBaseUrls,
    ...env,
    HOST: '127.0.0.1',
    PORT: String(port),
  };
}
