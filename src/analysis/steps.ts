/**
 * Work split into steps: a generator that yields between small parts of its work and returns
 * its result. The analysis writes its loops over lines and findings as steps, so that
 * `Turns.run` can return to the event loop inside a large file, while `runSteps` runs the same
 * code without pausing. Both get the same result, because a step only pauses the loop.
 */
export type Steps<T> = Generator<undefined, T, undefined>;

/** Items (lines, findings) that a loop handles between two yields, at most. */
export const maxStepItems = 64;

/** Characters of line text that a loop handles between two yields, unless one line is longer. */
export const maxStepChars = 16_384;

/**
 * Counts the work a loop has done since its last yield. A loop calls `count` once per item and
 * yields when it returns true.
 */
export class StepMeter {
  private items = 0;
  private chars = 0;

  count(chars: number, items = 1): boolean {
    this.items += items;
    this.chars += chars;
    if (this.items < maxStepItems && this.chars < maxStepChars) {
      return false;
    }
    this.items = 0;
    this.chars = 0;
    return true;
  }
}

/** Runs the steps to the end without pausing and returns the result. */
export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) {
      return step.value;
    }
  }
}

/**
 * Runs steps in time slices, returning to the event loop with `setImmediate` once a slice is
 * used up, so timers, requests and other jobs of the process run in between.
 */
export class Turns {
  private sliceStart = performance.now();

  /**
   * `sliceMs`: time the steps may run before they return to the event loop, in ms.
   * `checkpoint`: runs at each return to the event loop, after the other work has had its
   * turn. An error it throws ends `next` and `run` with that error, so it can stop the work.
   */
  constructor(
    private readonly sliceMs: number,
    private readonly checkpoint?: () => Promise<void>,
  ) {}

  /** Returns to the event loop once, runs the checkpoint and starts a new slice. */
  async next(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await this.checkpoint?.();
    this.sliceStart = performance.now();
  }

  async run<T>(steps: Steps<T>): Promise<T> {
    for (;;) {
      const step = steps.next();
      if (step.done) {
        return step.value;
      }
      if (performance.now() - this.sliceStart >= this.sliceMs) {
        await this.next();
      }
    }
  }
}

/**
 * Sorts a copy of `items` in steps with a stable natural merge sort, which merges the ascending
 * runs that `items` already has, such as each rule's findings in line order. ECMAScript 2019
 * requires `Array.prototype.sort` to be stable too, so both return the same order.
 */
export function* sortSteps<T>(
  items: readonly T[],
  compare: (left: T, right: T) => number,
): Steps<T[]> {
  let source = items.slice();
  let target = new Array<T>(source.length);
  const meter = new StepMeter();

  // The start of each ascending run, then the end of the last one.
  let bounds = [0];
  for (let index = 1; index < source.length; index += 1) {
    if (compare(source[index - 1]!, source[index]!) > 0) {
      bounds.push(index);
    }
    if (meter.count(0)) {
      yield;
    }
  }
  bounds.push(source.length);

  while (bounds.length > 2) {
    const merged = [0];
    for (let run = 0; run + 1 < bounds.length; run += 2) {
      const left = bounds[run]!;
      const middle = bounds[run + 1]!;
      // An odd run at the end is copied as it is.
      const right = bounds[run + 2] ?? middle;
      let fromLeft = left;
      let fromRight = middle;
      let index = left;
      // The left run wins ties, which keeps equal items in their order.
      while (fromLeft < middle && fromRight < right) {
        if (compare(source[fromRight]!, source[fromLeft]!) < 0) {
          target[index++] = source[fromRight++]!;
        } else {
          target[index++] = source[fromLeft++]!;
        }
      }
      while (fromLeft < middle) {
        target[index++] = source[fromLeft++]!;
      }
      while (fromRight < right) {
        target[index++] = source[fromRight++]!;
      }
      merged.push(right);
      if (meter.count(0, right - left)) {
        yield;
      }
    }
    [source, target] = [target, source];
    bounds = merged;
  }
  return source;
}
