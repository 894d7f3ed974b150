// Diff thread script for tests. While the shared counter in `workerData.failures` is above zero,
// each new thread takes one from it and fails its first diff in the way `workerData.mode` names.
// In 'stall' mode the thread never replies, and in 'crash' mode it throws. Threads started after
// that run the real script.
import { parentPort, workerData } from 'node:worker_threads';

const failuresLeft = new Int32Array(workerData.failures);
if (Atomics.sub(failuresLeft, 0, 1) > 0) {
  parentPort.once('message', () => {
    if (workerData.mode === 'crash') {
      throw new Error('the test thread crashed on purpose');
    }
    for (;;) {
      // Spins until the thread is terminated.
    }
  });
} else {
  await import('../../src/analysis/diff-thread.mjs');
}
