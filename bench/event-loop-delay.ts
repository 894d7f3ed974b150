import { monitorEventLoopDelay } from 'node:perf_hooks';

/** Runs `work` and returns its time and the longest event loop delay during it, in ms. */
export async function timeWithDelay<T>(work: () => Promise<T> | T) {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  // The histogram's timer needs a first sample before the work, or it misses the delay.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const start = performance.now();
  const result = await work();
  const milliseconds = performance.now() - start;
  // Let the histogram's timer see the end of the last delay.
  await new Promise((resolve) => setTimeout(resolve, 20));
  histogram.disable();
  return { result, milliseconds, maxDelay: histogram.max / 1e6 };
}
