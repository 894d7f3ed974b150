import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ByteBudget } from '../../src/web/read-limited-body.ts';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['performance'] });
});

afterEach(() => {
  vi.useRealTimers();
});

/** Starts a read on `budget` that records whether the budget evicted it. */
function startRead(budget: ByteBudget) {
  const state = { evicted: false };
  const read = budget.startRead(() => (state.evicted = true));
  return { read, state };
}

describe('ByteBudget.charge', () => {
  it('charges bytes that fit', () => {
    const budget = new ByteBudget(100);
    const { read } = startRead(budget);

    expect(budget.charge(read, 60)).toBe('charged');
    expect(budget.charge(read, 40)).toBe('charged');
    expect(budget.usedBytes).toBe(100);
  });

  it('evicts the slowest read for a faster one', () => {
    const budget = new ByteBudget(100);
    const slow = startRead(budget);
    const slower = startRead(budget);
    budget.charge(slow.read, 50);
    budget.charge(slower.read, 30);
    vi.advanceTimersByTime(1000);
    // Both have sent for 1000 ms: 0.05 and 0.03 bytes a millisecond.
    const fast = startRead(budget);

    expect(budget.charge(fast.read, 40)).toBe('charged');
    expect(slower.state.evicted).toBe(true);
    expect(slow.state.evicted).toBe(false);
    expect(budget.usedBytes).toBe(90);
  });

  it('evicts as many reads as the bytes need', () => {
    const budget = new ByteBudget(100);
    const reads = [10, 20, 30, 40].map((bytes) => {
      const started = startRead(budget);
      budget.charge(started.read, bytes);
      return started;
    });
    vi.advanceTimersByTime(1000);
    const fast = startRead(budget);

    expect(budget.charge(fast.read, 25)).toBe('charged');
    expect(reads.map((started) => started.state.evicted)).toEqual([true, true, false, false]);
    expect(budget.usedBytes).toBe(95);
  });

  it('drops the requester when it is slowest', () => {
    const budget = new ByteBudget(100);
    const trickle = startRead(budget);
    budget.charge(trickle.read, 60);
    vi.advanceTimersByTime(10_000);
    const fast = startRead(budget);
    budget.charge(fast.read, 35);
    vi.advanceTimersByTime(10);

    // 66 bytes in 10,010 ms against 35 in 10 ms, although the requester has more charged.
    expect(budget.charge(trickle.read, 6)).toBe('evicted');
    expect(fast.state.evicted).toBe(false);
    // The requester learns of its eviction from the result, not from its callback.
    expect(trickle.state.evicted).toBe(false);
    expect(budget.usedBytes).toBe(35);
  });

  it('rejects when finished bodies hold the budget', () => {
    const budget = new ByteBudget(100);
    const finished = startRead(budget);
    budget.charge(finished.read, 80);
    budget.finishRead(finished.read);
    const slow = startRead(budget);
    budget.charge(slow.read, 10);
    vi.advanceTimersByTime(1000);
    const fast = startRead(budget);

    expect(budget.charge(fast.read, 30)).toBe('over_budget');
    expect(slow.state.evicted).toBe(false);
    expect(budget.usedBytes).toBe(90);
  });

  it('returns to zero after cuts and releases', () => {
    const budget = new ByteBudget(100);
    const cut = startRead(budget);
    const finished = startRead(budget);
    budget.charge(cut.read, 30);
    budget.charge(finished.read, 50);
    budget.finishRead(finished.read);

    budget.cut(cut.read);
    budget.release(50);

    expect(budget.usedBytes).toBe(0);
  });
});
