import { describe, expect, it } from 'vitest';
import { addMonthsClamped, periodEnd } from '../../src/usage/period.ts';

/** Follows `count` monthly periods from `anchor`, each starting where the previous one ended. */
function monthlyChain(anchor: string, count: number): string[] {
  const anchorDate = new Date(anchor);
  const ends: string[] = [];
  let start = anchorDate;
  for (let index = 0; index < count; index++) {
    start = periodEnd(start, 'monthly', anchorDate);
    ends.push(start.toISOString());
  }
  return ends;
}

describe('monthly periodEnd', () => {
  it('keeps a 31st anchor through a leap year', () => {
    expect(monthlyChain('2027-12-31T09:30:15.250Z', 14)).toEqual([
      '2028-01-31T09:30:15.250Z',
      '2028-02-29T09:30:15.250Z',
      '2028-03-31T09:30:15.250Z',
      '2028-04-30T09:30:15.250Z',
      '2028-05-31T09:30:15.250Z',
      '2028-06-30T09:30:15.250Z',
      '2028-07-31T09:30:15.250Z',
      '2028-08-31T09:30:15.250Z',
      '2028-09-30T09:30:15.250Z',
      '2028-10-31T09:30:15.250Z',
      '2028-11-30T09:30:15.250Z',
      '2028-12-31T09:30:15.250Z',
      '2029-01-31T09:30:15.250Z',
      '2029-02-28T09:30:15.250Z',
    ]);
  });

  it('keeps a 31st anchor through a common year', () => {
    expect(monthlyChain('2027-01-31T23:59:59.999Z', 12)).toEqual([
      '2027-02-28T23:59:59.999Z',
      '2027-03-31T23:59:59.999Z',
      '2027-04-30T23:59:59.999Z',
      '2027-05-31T23:59:59.999Z',
      '2027-06-30T23:59:59.999Z',
      '2027-07-31T23:59:59.999Z',
      '2027-08-31T23:59:59.999Z',
      '2027-09-30T23:59:59.999Z',
      '2027-10-31T23:59:59.999Z',
      '2027-11-30T23:59:59.999Z',
      '2027-12-31T23:59:59.999Z',
      '2028-01-31T23:59:59.999Z',
    ]);
  });

  it('keeps a 30th anchor', () => {
    expect(monthlyChain('2027-11-30T00:00:00.000Z', 12)).toEqual([
      '2027-12-30T00:00:00.000Z',
      '2028-01-30T00:00:00.000Z',
      '2028-02-29T00:00:00.000Z',
      '2028-03-30T00:00:00.000Z',
      '2028-04-30T00:00:00.000Z',
      '2028-05-30T00:00:00.000Z',
      '2028-06-30T00:00:00.000Z',
      '2028-07-30T00:00:00.000Z',
      '2028-08-30T00:00:00.000Z',
      '2028-09-30T00:00:00.000Z',
      '2028-10-30T00:00:00.000Z',
      '2028-11-30T00:00:00.000Z',
    ]);
  });

  it('keeps a 1st anchor', () => {
    expect(monthlyChain('2028-01-01T12:00:00.000Z', 12)).toEqual([
      '2028-02-01T12:00:00.000Z',
      '2028-03-01T12:00:00.000Z',
      '2028-04-01T12:00:00.000Z',
      '2028-05-01T12:00:00.000Z',
      '2028-06-01T12:00:00.000Z',
      '2028-07-01T12:00:00.000Z',
      '2028-08-01T12:00:00.000Z',
      '2028-09-01T12:00:00.000Z',
      '2028-10-01T12:00:00.000Z',
      '2028-11-01T12:00:00.000Z',
      '2028-12-01T12:00:00.000Z',
      '2029-01-01T12:00:00.000Z',
    ]);
  });

  it('ends a clamped period on the anchor day', () => {
    const anchor = new Date('2027-01-31T10:00:00Z');
    const end = periodEnd(new Date('2027-02-28T10:00:00Z'), 'monthly', anchor);
    expect(end.toISOString()).toBe('2027-03-31T10:00:00.000Z');
  });

  it('ends the first period one month after the anchor', () => {
    const anchor = new Date('2026-12-04T00:00:00Z');
    expect(periodEnd(anchor, 'monthly', anchor).toISOString()).toBe('2027-01-04T00:00:00.000Z');
  });

  it('ends a start between boundaries at the next one', () => {
    const anchor = new Date('2027-01-31T10:00:00Z');
    const beforeBoundary = periodEnd(new Date('2027-03-20T00:00:00Z'), 'monthly', anchor);
    expect(beforeBoundary.toISOString()).toBe('2027-03-31T10:00:00.000Z');
    const afterBoundaryTime = periodEnd(new Date('2027-03-31T10:00:00.001Z'), 'monthly', anchor);
    expect(afterBoundaryTime.toISOString()).toBe('2027-04-30T10:00:00.000Z');
  });

  it('counts months from an anchor years back', () => {
    const anchor = new Date('2020-01-31T06:00:00Z');
    const end = periodEnd(new Date('2028-02-29T06:00:00Z'), 'monthly', anchor);
    expect(end.toISOString()).toBe('2028-03-31T06:00:00.000Z');
  });
});

describe('day periodEnd', () => {
  it('adds N days and ignores the anchor', () => {
    const anchor = new Date('2027-01-31T10:00:00Z');
    const start = new Date('2028-02-20T10:00:00Z');
    expect(periodEnd(start, '7d', anchor).toISOString()).toBe('2028-02-27T10:00:00.000Z');
    expect(periodEnd(start, '30d', anchor).toISOString()).toBe('2028-03-21T10:00:00.000Z');
    expect(periodEnd(start, '1d', anchor).toISOString()).toBe('2028-02-21T10:00:00.000Z');
  });

  it('follows from the previous end', () => {
    const anchor = new Date('2027-01-31T10:00:00Z');
    const first = periodEnd(anchor, '30d', anchor);
    const second = periodEnd(first, '30d', anchor);
    expect(first.toISOString()).toBe('2027-03-02T10:00:00.000Z');
    expect(second.toISOString()).toBe('2027-04-01T10:00:00.000Z');
  });
});

describe('addMonthsClamped', () => {
  it('clamps to the last day of a short month', () => {
    const anchor = new Date('2027-01-31T10:00:00Z');
    expect(addMonthsClamped(anchor, 1).toISOString()).toBe('2027-02-28T10:00:00.000Z');
    expect(addMonthsClamped(anchor, 13).toISOString()).toBe('2028-02-29T10:00:00.000Z');
    expect(addMonthsClamped(anchor, 2).toISOString()).toBe('2027-03-31T10:00:00.000Z');
  });

  it('moves back for negative months', () => {
    const anchor = new Date('2027-03-31T10:00:00Z');
    expect(addMonthsClamped(anchor, -1).toISOString()).toBe('2027-02-28T10:00:00.000Z');
    expect(addMonthsClamped(anchor, -3).toISOString()).toBe('2026-12-31T10:00:00.000Z');
  });
});
