import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OutageLog } from '../../src/db/outage-log.ts';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
});
afterEach(() => {
  vi.useRealTimers();
});

/** Returns a log callback that records the suppressed count of each call. */
function recorder() {
  const calls: number[] = [];
  return { calls, log: (suppressed: number) => void calls.push(suppressed) };
}

describe('OutageLog', () => {
  it('logs the first failure and counts repeats', () => {
    const outage = new OutageLog(60_000);
    const failures = recorder();
    for (let index = 0; index < 5; index += 1) {
      outage.fail(failures.log);
      vi.advanceTimersByTime(10_000);
    }
    expect(failures.calls).toEqual([0]);
    expect(outage.failing).toBe(true);
  });

  it('logs again once the interval has passed', () => {
    const outage = new OutageLog(60_000);
    const failures = recorder();
    outage.fail(failures.log);
    vi.advanceTimersByTime(30_000);
    outage.fail(failures.log);
    outage.fail(failures.log);
    vi.advanceTimersByTime(29_999);
    outage.fail(failures.log);
    vi.advanceTimersByTime(1);
    outage.fail(failures.log);
    expect(failures.calls).toEqual([0, 3]);
  });

  it('logs the recovery with the unlogged count', () => {
    const outage = new OutageLog(60_000);
    const failures = recorder();
    const recoveries = recorder();
    outage.fail(failures.log);
    outage.fail(failures.log);
    outage.recover(recoveries.log);
    outage.recover(recoveries.log);
    expect(recoveries.calls).toEqual([1]);
    expect(outage.failing).toBe(false);

    outage.fail(failures.log);
    expect(failures.calls).toEqual([0, 0]);
  });

  it('logs no recovery without a failure', () => {
    const recoveries = recorder();
    new OutageLog(60_000).recover(recoveries.log);
    expect(recoveries.calls).toEqual([]);
  });

  it('logs only the first failure with an infinite interval', () => {
    const outage = new OutageLog(Number.POSITIVE_INFINITY);
    const failures = recorder();
    outage.fail(failures.log);
    vi.advanceTimersByTime(24 * 3600_000);
    outage.fail(failures.log);
    expect(failures.calls).toEqual([0]);
  });
});
