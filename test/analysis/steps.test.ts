import { describe, expect, it } from 'vitest';
import {
  maxStepChars,
  maxStepItems,
  runSteps,
  sortSteps,
  StepMeter,
  Turns,
  type Steps,
} from '../../src/analysis/steps.ts';

describe('StepMeter', () => {
  it('ends a step after maxStepItems items', () => {
    const meter = new StepMeter();
    const ends: number[] = [];
    for (let item = 1; item <= 3 * maxStepItems; item += 1) {
      if (meter.count(10)) ends.push(item);
    }
    expect(ends).toEqual([maxStepItems, 2 * maxStepItems, 3 * maxStepItems]);
  });

  it('ends a step after maxStepChars characters', () => {
    const meter = new StepMeter();
    expect(meter.count(maxStepChars - 1)).toBe(false);
    expect(meter.count(1)).toBe(true);
    expect(meter.count(maxStepChars * 3)).toBe(true);
    expect(meter.count(0)).toBe(false);
  });

  it('counts several items at once', () => {
    const meter = new StepMeter();
    expect(meter.count(0, maxStepItems - 1)).toBe(false);
    expect(meter.count(0, 1)).toBe(true);
  });
});

describe('sortSteps', () => {
  const byKey = (left: { key: number }, right: { key: number }) => left.key - right.key;

  it('sorts stably like Array.prototype.sort', () => {
    const items = Array.from({ length: 1_000 }, (_, index) => ({ key: (index * 37) % 11, index }));

    const sorted = runSteps(sortSteps(items, byKey));

    expect(sorted).toEqual([...items].sort(byKey));
    expect(sorted.slice(0, 3).map((item) => item.index)).toEqual([0, 11, 22]);
  });

  it('leaves its input as it was', () => {
    const items = [{ key: 3 }, { key: 1 }, { key: 2 }];

    expect(runSteps(sortSteps(items, byKey))).toEqual([{ key: 1 }, { key: 2 }, { key: 3 }]);
    expect(items).toEqual([{ key: 3 }, { key: 1 }, { key: 2 }]);
  });

  it('sorts empty and single lists', () => {
    expect(runSteps(sortSteps([], byKey))).toEqual([]);
    expect(runSteps(sortSteps([{ key: 1 }], byKey))).toEqual([{ key: 1 }]);
  });

  it('merges ascending runs stably', () => {
    // Three ascending runs, the last one odd, with keys that repeat across runs.
    const keys = [1, 4, 4, 9, 0, 4, 5, 2, 4, 4, 8];
    const items = keys.map((key, index) => ({ key, index }));

    const sorted = runSteps(sortSteps(items, byKey));

    expect(sorted).toEqual([...items].sort(byKey));
    expect(sorted.map((item) => item.index)).toEqual([4, 0, 7, 1, 2, 5, 8, 9, 6, 10, 3]);
  });

  it('yields while it sorts', () => {
    const items = Array.from({ length: 1_000 }, (_, index) => ({ key: -index }));
    const steps = sortSteps(items, byKey);
    let yields = 0;
    while (!steps.next().done) yields += 1;
    // Reading the 1,000 items for their runs alone yields after every maxStepItems of them.
    expect(yields).toBeGreaterThanOrEqual(Math.floor(1_000 / maxStepItems));
  });
});

describe('Turns', () => {
  function* countTo(limit: number, log: string[]): Steps<number> {
    for (let step = 1; step <= limit; step += 1) {
      log.push(`step ${step}`);
      yield;
    }
    return limit;
  }

  it('yields to the event loop after a slice', async () => {
    const log: string[] = [];
    setImmediate(() => log.push('immediate'));

    const result = await new Turns(0).run(countTo(3, log));

    expect(result).toBe(3);
    expect(log).toEqual(['step 1', 'immediate', 'step 2', 'step 3']);
  });

  it('runs steps at once within a slice', async () => {
    const log: string[] = [];
    setImmediate(() => log.push('immediate'));

    const result = await new Turns(60_000).run(countTo(3, log));
    log.push('done');

    expect(result).toBe(3);
    expect(log).toEqual(['step 1', 'step 2', 'step 3', 'done']);
  });

  it('runs the checkpoint at each return', async () => {
    const log: string[] = [];
    setImmediate(() => log.push('immediate'));
    const turns = new Turns(0, async () => {
      log.push('checkpoint');
    });

    const result = await turns.run(countTo(3, log));

    expect(result).toBe(3);
    expect(log).toEqual([
      'step 1',
      'immediate',
      'checkpoint',
      'step 2',
      'checkpoint',
      'step 3',
      'checkpoint',
    ]);
  });

  it('stops at a checkpoint that throws', async () => {
    const log: string[] = [];
    let checkpoints = 0;
    const turns = new Turns(0, async () => {
      checkpoints += 1;
      if (checkpoints === 2) throw new Error('stop here');
    });

    await expect(turns.run(countTo(5, log))).rejects.toThrow('stop here');

    expect(log).toEqual(['step 1', 'step 2']);
    expect(checkpoints).toBe(2);
  });
});
