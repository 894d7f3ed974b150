import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { DiffThreadError, DiffWorker, terminateGraceMs } from '../../src/analysis/diff-worker.ts';
import { additionsPatch } from '../../src/analysis/local-patch.ts';
import { failingDiffWorker } from '../helpers/failing-diff-worker.ts';

const limits = { maxEditLength: 1_000, timeoutMs: 10_000 };

// `x` and `y` swap places, so only one of them stays unchanged and the other is added.
const oldText = 'x\ny\n';
const newText = 'y\nx\n';

let workers: DiffWorker[] = [];

function failingWorker(mode: 'stall' | 'crash'): DiffWorker {
  const worker = failingDiffWorker(mode);
  workers.push(worker);
  return worker;
}

afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.close()));
  workers = [];
});

describe('DiffWorker', () => {
  it('terminates a thread past the timeout', async () => {
    const worker = failingWorker('stall');
    const start = performance.now();

    const stalled = await additionsPatch(oldText, newText, { ...limits, timeoutMs: 100 }, worker);

    const elapsedMs = performance.now() - start;
    expect(stalled).toBeNull();
    expect(elapsedMs).toBeGreaterThanOrEqual(100 + terminateGraceMs - 5);
    expect(elapsedMs).toBeLessThan(100 + terminateGraceMs + 2_000);
    const next = await additionsPatch(oldText, newText, limits, worker);
    expect(next?.additions).toBe(1);
  });

  it('rejects a diff whose thread crashes', async () => {
    const worker = failingWorker('crash');

    const crashed = additionsPatch(oldText, newText, limits, worker);

    await expect(crashed).rejects.toThrow(DiffThreadError);
    await expect(crashed).rejects.toThrow(/the test thread crashed on purpose/);
    const next = await additionsPatch(oldText, newText, limits, worker);
    expect(next?.additions).toBe(1);
  });

  it('runs the diffs waiting behind a crash', async () => {
    const worker = failingWorker('crash');

    const results = await Promise.allSettled([
      additionsPatch(oldText, newText, limits, worker),
      additionsPatch('a\nb\n', 'a\nnew\nb\n', limits, worker),
      additionsPatch(oldText, newText, { maxEditLength: 1, timeoutMs: 10_000 }, worker),
    ]);

    expect(results[0]?.status).toBe('rejected');
    expect(results[1]).toEqual({
      status: 'fulfilled',
      value: { patch: '@@ -1,0 +2,1 @@\n+new', additions: 1 },
    });
    expect(results[2]).toEqual({ status: 'fulfilled', value: null });
  });

  it('drops a waiting diff on abort', async () => {
    const worker = failingWorker('stall');
    const stalled = additionsPatch(oldText, newText, { ...limits, timeoutMs: 100 }, worker);
    const controller = new AbortController();
    const waiting = additionsPatch(oldText, newText, limits, worker, controller.signal);
    const reason = new Error('the analysis stopped');
    const start = performance.now();

    controller.abort(reason);

    await expect(waiting).rejects.toBe(reason);
    // The stalled diff still occupies the thread, so the rejection did not wait for it.
    expect(performance.now() - start).toBeLessThan(terminateGraceMs);
    expect(await stalled).toBeNull();
    const next = await additionsPatch('a\nb\n', 'a\nnew\nb\n', limits, worker);
    expect(next).toEqual({ patch: '@@ -1,0 +2,1 @@\n+new', additions: 1 });
  });

  it('rejects a diff aborted before it queues', async () => {
    const worker = failingWorker('crash');
    const reason = new Error('the analysis stopped');

    const aborted = additionsPatch(oldText, newText, limits, worker, AbortSignal.abort(reason));

    await expect(aborted).rejects.toBe(reason);
    // No thread started, so the crashing thread's first diff is still to come.
    await expect(additionsPatch(oldText, newText, limits, worker)).rejects.toThrow(DiffThreadError);
  });

  it('times out a stalled structuredPatch', async () => {
    const worker = failingWorker('stall');
    const request = {
      oldFileName: 'a/x',
      newFileName: 'b/x',
      oldText,
      newText,
      context: 3,
      timeoutMs: 100,
    };

    const stalled = await worker.structuredPatch(request);

    expect(stalled).toEqual({ status: 'timed_out' });
    const next = await worker.structuredPatch(request);
    expect(next.status).toBe('done');
  });

  it('tells the structuredPatch limits apart', async () => {
    const worker = new DiffWorker();
    workers.push(worker);
    // Five distinct lines in another order, so Myers' algorithm needs many edits and time.
    const repeated = ['}', '', '  return value;', '{', '  const value = 1;'];
    const textOf = (step: number) =>
      Array.from({ length: 20_000 }, (_, index) => `${repeated[(index * step) % 5]}\n`).join('');
    const request = {
      oldFileName: 'a/x',
      newFileName: 'b/x',
      oldText: textOf(7),
      newText: textOf(11),
      context: 0,
    };

    const tooManyEdits = await worker.structuredPatch({
      ...request,
      maxEditLength: 10,
      timeoutMs: 10_000,
    });
    const timedOut = await worker.structuredPatch({ ...request, timeoutMs: 20 });

    expect(tooManyEdits).toEqual({ status: 'too_many_edits' });
    expect(timedOut).toEqual({ status: 'timed_out' });
  });

  it('lets the process exit after a diff', async () => {
    // Loads the sources the way bin/fixwright.js does. An idle thread that kept the process
    // alive would hold it for the minute until the thread ends, so the child is killed sooner.
    const script = [
      "import { register } from 'tsx/esm/api';",
      'register();',
      "const { additionsPatch } = await import('./src/analysis/local-patch.ts');",
      "const limits = { maxEditLength: 1000, timeoutMs: 10000 };",
      "const result = await additionsPatch('x\\ny\\n', 'y\\nx\\n', limits);",
      'console.log(JSON.stringify(result));',
    ].join('\n');

    const { code, stdout, stderr } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
    }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '--eval', script], {
        stdio: 'pipe',
        timeout: 20_000,
        killSignal: 'SIGKILL',
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk) => (out += chunk));
      child.stderr.on('data', (chunk) => (err += chunk));
      child.once('error', reject);
      child.once('exit', (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
    });

    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ patch: '@@ -2,0 +2,1 @@\n+x', additions: 1 });
  });
});
