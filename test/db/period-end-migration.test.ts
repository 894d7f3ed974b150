import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { periodEnd } from '../../src/usage/period.ts';
import {
  applyMigration,
  createEmptyDatabase,
  migrationTags,
  type EmptyDatabase,
} from '../helpers/migrations.ts';

let database: EmptyDatabase;
let sql: postgres.Sql;

beforeAll(async () => {
  // A zone far from UTC shows that the backfill computes month boundaries in UTC.
  database = await createEmptyDatabase('period_end', 'Pacific/Auckland');
  sql = database.sql;
});

afterAll(async () => {
  await database?.drop();
});

// Start, anchor and the expected monthly end, as UTC text. The ::text casts below keep
// microseconds, which postgres.js would drop when sending a Date.
const cases: { login: string; start: string; anchor: string; end: string }[] = [
  // A new user: start and anchor are the same now(), with microseconds. The app reads them to
  // the millisecond, so the end has milliseconds only.
  {
    login: 'new',
    start: '2026-12-04 10:00:00.123456',
    anchor: '2026-12-04 10:00:00.123456',
    end: '2027-01-04 10:00:00.123',
  },
  // The rollover stored the clamped Nov 30 boundary to the millisecond. Compared to the
  // millisecond, it is a boundary, so the period ends on Dec 31, not on Nov 30.
  {
    login: 'rolled-clamped',
    start: '2026-11-30 10:00:00.123',
    anchor: '2026-10-31 10:00:00.123456',
    end: '2026-12-31 10:00:00.123',
  },
  { login: 'leap', start: '2028-01-31 06:00:00', anchor: '2028-01-31 06:00:00', end: '2028-02-29 06:00:00' },
  { login: 'after-february', start: '2027-02-28 09:30:00', anchor: '2027-01-31 09:30:00', end: '2027-03-31 09:30:00' },
  { login: 'april', start: '2027-04-30 09:30:00', anchor: '2027-03-31 09:30:00', end: '2027-05-31 09:30:00' },
  // 30-day periods from Jan 1 left the start at Mar 31 23:00: the first monthly period ends
  // an hour later.
  { login: 'short', start: '2026-03-31 23:00:00', anchor: '2026-01-01 00:00:00', end: '2026-04-01 00:00:00' },
  { login: 'start-before-anchor', start: '2026-11-01 00:00:00', anchor: '2026-11-20 00:00:00', end: '2026-11-20 00:00:00' },
  {
    login: 'new-year',
    start: '2026-12-31 23:59:59.999',
    anchor: '2026-12-31 23:59:59.999',
    end: '2027-01-31 23:59:59.999',
  },
  // Late in the UTC day, which is the next day in Auckland.
  { login: 'late-utc', start: '2027-06-30 20:00:00', anchor: '2027-05-31 20:00:00', end: '2027-07-31 20:00:00' },
];

describe('period_end backfill migration', () => {
  it('backfills the monthly end of each user', async () => {
    const tags = migrationTags();
    const backfillIndex = tags.findIndex((tag) => tag.endsWith('_period_end_backfill'));
    expect(backfillIndex).toBeGreaterThan(0);
    for (const tag of tags.slice(0, backfillIndex)) await applyMigration(sql, tag);

    for (const row of cases) {
      await sql`
        INSERT INTO users (login, period_started_at, period_anchor_at)
        VALUES (${row.login}, (${row.start}::text || '+00')::timestamptz, (${row.anchor}::text || '+00')::timestamptz)
      `;
    }
    const [pending] = await sql<{ stale: number }[]>`
      SELECT count(*)::int AS stale FROM users WHERE period_end_billing_period = ''
    `;
    expect(pending!.stale).toBe(cases.length);

    await applyMigration(sql, tags[backfillIndex]!);

    const rows = await sql<{ login: string; end: string; ends_at: Date; billing_period: string }[]>`
      SELECT login, (period_ends_at AT TIME ZONE 'UTC')::text AS end, period_ends_at AS ends_at,
        period_end_billing_period AS billing_period
      FROM users
    `;
    const byLogin = new Map(rows.map((row) => [row.login, row]));
    for (const row of cases) {
      const stored = byLogin.get(row.login)!;
      expect(stored.end, row.login).toBe(row.end);
      expect(stored.billing_period, row.login).toBe('monthly');
      // The app's own computation from the same start and anchor, read to the millisecond.
      const start = new Date(`${row.start.replace(' ', 'T')}Z`);
      const anchor = new Date(`${row.anchor.replace(' ', 'T')}Z`);
      const computed = periodEnd(start, 'monthly', anchor);
      expect(stored.ends_at.toISOString(), row.login).toBe(computed.toISOString());
    }
  });
});
