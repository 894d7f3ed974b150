import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ByteBudget, RATE_WINDOW_MS } from '../../src/web/read-limited-body.ts';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['performance'] });
});

afterEach(() => {
  vi.useRealTimers();
});

/**
 * Starts a read on `budget` of a body expected to be `expectedBytes` long that records whether
 * the budget evicted it.
 */
function startRead(budget: ByteBudget, expectedBytes = 100) {
  const state = { evicted: false };
  const read = budget.startRead(expectedBytes, () => (state.evicted = true));
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

  it('evicts the read that finishes last', () => {
    const budget = new ByteBudget(100);
    const slow = startRead(budget);
    const slower = startRead(budget);
    budget.charge(slow.read, 50);
    budget.charge(slower.read, 30);
    vi.advanceTimersByTime(1000);
    // Both have sent for 1000 ms: 0.05 and 0.03 bytes a millisecond, so the rest of their
    // 100 bytes takes 1000 and 2333 ms more.
    const fast = startRead(budget, 40);

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
    const fast = startRead(budget, 25);

    expect(budget.charge(fast.read, 25)).toBe('charged');
    expect(reads.map((started) => started.state.evicted)).toEqual([true, true, false, false]);
    expect(budget.usedBytes).toBe(95);
  });

  it('drops the requester when it finishes last', () => {
    const budget = new ByteBudget(100);
    const trickle = startRead(budget);
    budget.charge(trickle.read, 60);
    vi.advanceTimersByTime(10_000);
    const fast = startRead(budget);
    budget.charge(fast.read, 35);
    vi.advanceTimersByTime(10);

    // The rest of 100 bytes takes 5667 ms at the 6 bytes of the last second, and 19 ms at 35
    // bytes in 10 ms, although the requester has more charged.
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

describe('ByteBudget ranking against slow bodies', () => {
  // Each case fills a budget of 100 bytes with a body that keeps memory charged on purpose, then a
  // delivery arrives whose bytes do not fit.

  it('cuts a burst that stalled', () => {
    const budget = new ByteBudget(100);
    const burst = startRead(budget);
    budget.charge(burst.read, 90);
    vi.advanceTimersByTime(1);
    const delivery = startRead(budget, 20);

    // The burst needs 10 more bytes at 90 a millisecond: 0.11 ms, but it stalled for 1 ms.
    // The delivery's whole body is in its chunk, so it scores 0.
    expect(budget.charge(delivery.read, 20)).toBe('charged');
    expect(burst.state.evicted).toBe(true);
    expect(budget.usedBytes).toBe(20);
  });

  it('cuts a body stalled at its last byte', () => {
    const budget = new ByteBudget(100);
    const stalled = startRead(budget, 91);
    budget.charge(stalled.read, 90);
    const delivery = startRead(budget, 20);

    // In the same millisecond as its burst, the last byte still takes 1/90 ms.
    expect(budget.charge(delivery.read, 20)).toBe('charged');
    expect(stalled.state.evicted).toBe(true);
    expect(budget.usedBytes).toBe(20);
  });

  it('cuts a stall before a delivery in chunks', () => {
    const budget = new ByteBudget(100);
    const stalled = startRead(budget, 61);
    budget.charge(stalled.read, 60);
    vi.advanceTimersByTime(5000);
    const delivery = startRead(budget, 80);
    budget.charge(delivery.read, 30);
    vi.advanceTimersByTime(100);

    // The delivery needs 10 more bytes at 0.7 a millisecond: 14 ms. The stalled body sent
    // nothing in the last second, and its last chunk came 5100 ms ago.
    expect(budget.charge(delivery.read, 40)).toBe('charged');
    expect(stalled.state.evicted).toBe(true);
    expect(delivery.state.evicted).toBe(false);
    expect(budget.usedBytes).toBe(70);
  });

  it('cuts a trickle beside a delivery', () => {
    const budget = new ByteBudget(100);
    const trickle = startRead(budget);
    for (let sent = 0; sent < 50; sent += 1) {
      expect(budget.charge(trickle.read, 1)).toBe('charged');
      vi.advanceTimersByTime(10);
    }
    const delivery = startRead(budget, 60);

    // 50 bytes in 500 ms: the other 50 take 500 ms more.
    expect(budget.charge(delivery.read, 60)).toBe('charged');
    expect(trickle.state.evicted).toBe(true);
    expect(budget.usedBytes).toBe(60);
  });

  it('cuts a trickle to a near length', () => {
    // Content-Length is declared just above the bytes sent, and a byte follows each millisecond.
    const budget = new ByteBudget(100);
    const liar = startRead(budget, 95);
    budget.charge(liar.read, 90);
    for (let sent = 0; sent < 4; sent += 1) {
      vi.advanceTimersByTime(1);
      budget.charge(liar.read, 1);
    }
    const delivery = startRead(budget, 20);

    // The last byte takes 1/23.5 ms and the liar sent its last chunk this millisecond.
    expect(budget.charge(delivery.read, 20)).toBe('charged');
    expect(liar.state.evicted).toBe(true);
    expect(budget.usedBytes).toBe(20);
  });

  it('cuts a near length before chunked delivery', () => {
    // A burst, a Content-Length 300 bytes above it, then a byte every 10 ms.
    const budget = new ByteBudget(1000);
    const liar = startRead(budget, 900);
    budget.charge(liar.read, 600);
    const trickle = (ms: number) => {
      for (let elapsed = 0; elapsed < ms; elapsed += 10) {
        vi.advanceTimersByTime(10);
        expect(budget.charge(liar.read, 1)).toBe('charged');
      }
    };
    trickle(1500);
    const delivery = startRead(budget, 450);
    budget.charge(delivery.read, 100);
    trickle(500);

    // The delivery needs 200 more bytes at 0.5 a millisecond: 400 ms. The liar needs 100 bytes
    // at the 101 bytes of the last second: 990 ms. At its average rate since the start, 800
    // bytes in 2000 ms, it would need 250 ms.
    expect(budget.charge(delivery.read, 150)).toBe('charged');
    expect(liar.state.evicted).toBe(true);
    expect(delivery.state.evicted).toBe(false);
    expect(budget.usedBytes).toBe(250);
  });

  it('cuts a stalled body without length', () => {
    // Without Content-Length a body is expected to be as long as the largest body accepted.
    const budget = new ByteBudget(100);
    const chunked = startRead(budget, 1000);
    budget.charge(chunked.read, 90);
    vi.advanceTimersByTime(1);
    const delivery = startRead(budget, 20);

    // The other 910 bytes take 10.1 ms at 90 bytes a millisecond.
    expect(budget.charge(delivery.read, 20)).toBe('charged');
    expect(chunked.state.evicted).toBe(true);
    expect(budget.usedBytes).toBe(20);
  });

  it('cuts another read on a tie', () => {
    // Both bodies arrived whole this millisecond, so both score 0.
    const budget = new ByteBudget(100);
    const whole = startRead(budget, 50);
    budget.charge(whole.read, 50);
    const delivery = startRead(budget, 60);

    expect(budget.charge(delivery.read, 60)).toBe('charged');
    expect(whole.state.evicted).toBe(true);
    expect(delivery.state.evicted).toBe(false);
    expect(budget.usedBytes).toBe(60);
  });
});

describe('BodyRead.holdScore window', () => {
  it('drops a burst over the next window', () => {
    const budget = new ByteBudget(1000);
    const { read } = startRead(budget, 1000);
    budget.charge(read, 100);

    // Younger than the window, the read keeps its rate since the start: 900 bytes at 100 in
    // 999 ms.
    vi.advanceTimersByTime(RATE_WINDOW_MS - 1);
    expect(read.holdScore(performance.now())).toBeCloseTo(8991);
    // The burst fills the previous window, which lies wholly in the last second.
    vi.advanceTimersByTime(1);
    expect(read.holdScore(performance.now())).toBeCloseTo(9000);
    // Half of the previous window lies in the last second, so half the burst counts.
    vi.advanceTimersByTime(RATE_WINDOW_MS / 2);
    expect(read.holdScore(performance.now())).toBeCloseTo(18_000);
    vi.advanceTimersByTime(RATE_WINDOW_MS / 2);
    expect(read.holdScore(performance.now())).toBe(Infinity);
  });

  it('forgets a burst after a skipped window', () => {
    const budget = new ByteBudget(1000);
    const { read } = startRead(budget, 1000);
    budget.charge(read, 100);
    vi.advanceTimersByTime(2.5 * RATE_WINDOW_MS);
    budget.charge(read, 10);

    // Only the 10 bytes count: 890 bytes at 10 a second.
    expect(read.holdScore(performance.now())).toBeCloseTo(89_000);
  });

  it('counts the pending chunk in the window', () => {
    const budget = new ByteBudget(1000);
    const { read } = startRead(budget, 1000);
    budget.charge(read, 100);
    vi.advanceTimersByTime(3 * RATE_WINDOW_MS);

    // 880 bytes at the 20 pending a second, and the pending chunk means no stall.
    expect(read.holdScore(performance.now(), 20)).toBeCloseTo(44_000);
  });
});
