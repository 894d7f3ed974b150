import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyMigration,
  createEmptyDatabase,
  migrationTags,
  type EmptyDatabase,
} from '../helpers/migrations.ts';

let database: EmptyDatabase;
let sql: postgres.Sql;

// The ::text casts keep microseconds: postgres.js sends timestamptz parameters through Date.
async function insertUser(login: string, createdAt: string, periodStartedAt: string): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    INSERT INTO users (login, created_at, period_started_at)
    VALUES (${login}, ${createdAt}::text::timestamptz, ${periodStartedAt}::text::timestamptz)
    RETURNING id
  `;
  return row!.id;
}

async function insertPlanChange(
  userId: string,
  reason: 'plan_switch' | 'usage_reset' | 'period_rollover',
  toPlan: 'free' | 'pro' | 'enterprise',
  createdAt: string,
): Promise<void> {
  await sql`
    INSERT INTO plan_changes
      (user_id, from_plan, to_plan, tokens_used_before, tokens_used_after, changed_by, reason, created_at)
    VALUES (${userId}, 'free', ${toPlan}, 0, 0, 'cli:root', ${reason}, ${createdAt}::text::timestamptz)
  `;
}

/** Reads each user's anchor by login, as UTC text with microseconds. */
async function anchors(): Promise<Record<string, string>> {
  const rows = await sql<{ login: string; anchor: string }[]>`
    SELECT login, (period_anchor_at AT TIME ZONE 'UTC')::text AS anchor FROM users
  `;
  return Object.fromEntries(rows.map((row) => [row.login, row.anchor]));
}

beforeAll(async () => {
  // A zone far from UTC shows that the backfill computes month boundaries in UTC.
  database = await createEmptyDatabase('anchor', 'Pacific/Auckland');
  sql = database.sql;
});

afterAll(async () => {
  await database?.drop();
});

describe('period_anchor migration', () => {
  it('backfills the anchor of each user', async () => {
    const tags = migrationTags();
    const anchorIndex = tags.findIndex((tag) => tag.endsWith('_period_anchor'));
    expect(anchorIndex).toBeGreaterThan(0);
    for (const tag of tags.slice(0, anchorIndex)) await applyMigration(sql, tag);

    await insertUser('never-rolled', '2026-12-04 10:00:00.123456+00', '2026-12-04 10:00:00.123456+00');
    // The rollover stores boundaries with millisecond precision.
    await insertUser('clamped', '2026-10-31 10:00:00.123456+00', '2026-11-30 10:00:00.123+00');
    await insertUser('drifted', '2026-01-31 10:00:00+00', '2026-11-28 10:00:00+00');
    const reset = await insertUser('reset', '2026-01-15 08:00:00+00', '2026-11-30 12:00:00+00');
    await insertPlanChange(reset, 'usage_reset', 'free', '2026-08-31 12:00:00+00');
    await insertPlanChange(reset, 'period_rollover', 'free', '2026-10-31 12:00:00+00');
    const pro = await insertUser('pro', '2026-01-15 08:00:00+00', '2026-11-30 18:00:00+00');
    await insertPlanChange(pro, 'plan_switch', 'pro', '2026-10-31 18:00:00+00');
    await insertPlanChange(pro, 'plan_switch', 'enterprise', '2026-11-10 09:00:00+00');
    const free = await insertUser('free-switch', '2026-01-31 06:00:00+00', '2026-11-30 06:00:00+00');
    await insertPlanChange(free, 'plan_switch', 'free', '2026-03-05 09:00:00+00');
    await insertUser('start-before-creation', '2026-11-20 00:00:00+00', '2026-11-01 00:00:00+00');

    await applyMigration(sql, tags[anchorIndex]!);

    const result = await anchors();
    // Never rolled over: the anchor is the start, to the microsecond.
    expect(result['never-rolled']).toBe('2026-12-04 10:00:00.123456');
    // Oct 31 plus one month, clamped: the anchor goes back to the 31st.
    expect(result['clamped']).toBe('2026-10-31 10:00:00.123456');
    // Jan 31 plus ten months is Nov 30, not Nov 28, so the start is kept and no period is short.
    expect(result['drifted']).toBe('2026-11-28 10:00:00');
    // The usage reset started the run of periods, and rollovers do not count.
    expect(result['reset']).toBe('2026-08-31 12:00:00');
    // The switch to pro started the run, and the later switch to enterprise did not.
    expect(result['pro']).toBe('2026-10-31 18:00:00');
    // A switch to free starts no period, so creation on Jan 31 is the anchor.
    expect(result['free-switch']).toBe('2026-01-31 06:00:00');
    expect(result['start-before-creation']).toBe('2026-11-01 00:00:00');

    const [column] = await sql<{ is_nullable: string }[]>`
      SELECT is_nullable FROM information_schema.columns
      WHERE table_name = 'users' AND column_name = 'period_anchor_at'
    `;
    expect(column!.is_nullable).toBe('NO');
  });
});
