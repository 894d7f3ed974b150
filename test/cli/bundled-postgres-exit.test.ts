import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/process.ts';
import {
  fixedFile,
  requestPreview,
  serviceEvents,
  startPreviewFakes,
  type PreviewFakes,
} from '../helpers/preview-service.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

let parent: string;
let fakes: PreviewFakes;
const services: ServiceProcess[] = [];

beforeAll(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'fixwright-bundled-exit-'));
  // The postgres system user runs the bundled server when the tests run as root.
  await chmod(parent, 0o755);
  fakes = await startPreviewFakes();
}, 60_000);

afterAll(async () => {
  for (const service of services) await service.stop('SIGKILL');
  await fakes?.close();
  await rm(parent, { recursive: true, force: true });
});

describe('bundled PostgreSQL exit', () => {
  it('stops the service with status 1', async () => {
    const dataDir = path.join(parent, 'data');
    const env = { ...fakes.env, DATA_DIR: dataDir, SHUTDOWN_TIMEOUT_SECONDS: '3' };
    const service = await startServiceProcess(env);
    services.push(service);
    // The response arrives 1 s into the call, after the server is gone and before the stop
    // ends the call's settle retries, 3 s after the server's exit.
    fakes.groq.setHandler(() => ({ text: fixedFile, delayMs: 1_000 }));
    const patchRequestId = await requestPreview(service, fakes, env);
    const call = await waitFor(
      async () => fakes.groq.requests.find((request) => request.path.endsWith('/chat/completions')),
      { timeoutMs: 30_000, describe: () => `the model call to start; output:\n${service.output()}` },
    );

    // The first line of postmaster.pid is the server's pid.
    const pidFile = await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8');
    process.kill(Number(pidFile.split('\n')[0]), 'SIGKILL');
    await waitFor(async () => service.process.exitCode !== null || service.process.signalCode !== null, {
      timeoutMs: 45_000,
      describe: () => `the service to exit; output:\n${service.output()}`,
    });

    const output = service.output();
    expect(service.process.signalCode).toBeNull();
    expect(service.process.exitCode).toBe(1);
    expect(serviceEvents(output, 'bundled_postgres.exited')).toHaveLength(1);
    const stopping = serviceEvents(output, 'service.stopping');
    expect(stopping).toHaveLength(1);
    expect(stopping[0]!.reason).toBe('bundled_postgres_exited');
    expect(stopping[0]!.level).toBe(50);
    expect(serviceEvents(output, 'service.stopped')).toHaveLength(1);
    expect(serviceEvents(output, 'process.unhandled_rejection')).toEqual([]);
    // Every line is a pino line, so no stack trace went to the output on its own.
    const lines = output.split('\n').filter((line) => line.trim() !== '');
    expect(lines.filter((line) => !line.startsWith('{"level":'))).toEqual([]);

    // The provider billed the call, and the stop ended its settle before the ledger had it.
    expect(call.reply?.status).toBe(200);
    const failed = serviceEvents(output, 'usage.settle_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.level).toBe(50);
    const keyPattern = new RegExp(`^${patchRequestId}:[0-9a-f]{64}:generation-0:attempt-0:groq$`);
    expect(failed[0]!.idempotencyKey).toMatch(keyPattern);
    expect(failed[0]!.provider).toBe('groq');
    expect(failed[0]!.totalTokens).toBe(call.reply!.usage!.total_tokens);
    expect(failed[0]!.promptTokens).toBe(call.reply!.usage!.prompt_tokens);
    expect(failed[0]!.completionTokens).toBe(call.reply!.usage!.completion_tokens);

    // The next start starts the server again on the same data.
    const restarted = await startServiceProcess(env);
    services.push(restarted);
    expect(serviceEvents(restarted.output(), 'bundled_postgres.started')).toHaveLength(1);
    await restarted.stop('SIGTERM');
    expect(restarted.process.exitCode).toBe(0);
  }, 120_000);
});
