import { DiffWorker } from '../../src/analysis/diff-worker.ts';

const failingScript = new URL('./failing-diff-thread.mjs', import.meta.url);

/**
 * Returns a diff worker whose first `failures` threads fail their first diff: 'stall' never
 * replies and 'crash' throws in the thread. Later threads diff as usual. Close it after use.
 */
export function failingDiffWorker(mode: 'stall' | 'crash', failures = 1): DiffWorker {
  const counter = new SharedArrayBuffer(4);
  new Int32Array(counter)[0] = failures;
  return new DiffWorker({ scriptUrl: failingScript, workerData: { mode, failures: counter } });
}
