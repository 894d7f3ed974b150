// `fixwright demo`, the command behind `npm run demo`, stopped by a signal before its flow
// finished must exit non-zero with one line on stderr, and still remove what it started.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/process.ts';

let tmpDir: string;

beforeAll(async () => {
  tmpDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-demo-stop-'));
});

afterAll(async () => {
  await rm(tmpDir, { recursive: true, force: true });
});

/**
 * Starts the demo, sends `signal` to its pid once its output contains `marker`, and returns
 * the exit code, the output and the demo folder it printed.
 */
async function stopDemoAt(marker: string, signal: NodeJS.Signals) {
  const demo = spawn(process.execPath, ['bin/fixwright.js', 'demo'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: tmpDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let errors = '';
  demo.stdout!.on('data', (chunk) => (output += chunk));
  demo.stderr!.on('data', (chunk) => (errors += chunk));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    demo.once('close', (code, exitSignal) => resolve({ code, signal: exitSignal })),
  );
  try {
    await waitFor(
      async () => {
        if (demo.exitCode !== null) throw new Error(`the demo exited with ${demo.exitCode}`);
        return output.includes(marker);
      },
      { timeoutMs: 60_000, intervalMs: 20, describe: () => `"${marker}" in:\n${output}\n${errors}` },
    );
    process.kill(demo.pid!, signal);
    const result = await closed;
    const folder = /^Demo folder: (\S+)/m.exec(output)?.[1];
    return { ...result, output, errors, folder };
  } finally {
    if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
  }
}

describe('fixwright demo stopped early', () => {
  // Exit code, signal, when it is sent, and the output line that it waits for.
  const cases: [number, NodeJS.Signals, string, string][] = [
    [130, 'SIGINT', 'while the git repository is made', 'Started the fake Gemini'],
    [143, 'SIGTERM', 'while the service starts', 'Starting the service'],
  ];
  it.each(cases)('exits %i on %s %s', async (code, signal, _when, marker) => {
    const result = await stopDemoAt(marker, signal);
    expect(result.code, `${result.output}\n${result.errors}`).toBe(code);
    expect(result.signal).toBeNull();
    expect(result.errors).toBe(`The demo was stopped by ${signal} before it finished.\n`);
    expect(result.output).toContain('Stopped everything the demo started');
    expect(result.folder).toBeDefined();
    expect(existsSync(result.folder!)).toBe(false);
  }, 120_000);
});
