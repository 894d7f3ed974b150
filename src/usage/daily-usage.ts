import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';

/** Tokens of one UTC day, split by whose key paid: the platform's or the user's own. */
export interface DailyUsage {
  /** YYYY-MM-DD in UTC. */
  day: string;
  platform: number;
  own: number;
}

/** Maximum number of days the chart shows; a longer period shows the days up to today. */
export const maxChartDays = 92;

/**
 * Sums the user's tokens per UTC day and key source from token_events, for every day from
 * `start` to `end` (exclusive), with zeros for days without calls.
 */
export async function getDailyUsage(
  db: Database,
  userId: string,
  range: { start: Date; end: Date },
): Promise<DailyUsage[]> {
  const days = chartWindow(utcDays(range.start, range.end), new Date());
  if (days.length === 0) return [];
  const rows = await db.execute<{ day: string; key_source: 'platform' | 'user'; tokens: string }>(sql`
    SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, key_source,
      sum(total_tokens)::bigint AS tokens
    FROM token_events
    WHERE user_id = ${userId} AND created_at >= ${range.start.toISOString()}
      AND created_at < ${range.end.toISOString()}
    GROUP BY 1, 2
  `);
  const byDay = new Map(days.map((day) => [day, { day, platform: 0, own: 0 }]));
  for (const row of rows) {
    const entry = byDay.get(row.day);
    if (!entry) continue;
    if (row.key_source === 'platform') entry.platform += Number(row.tokens);
    else entry.own += Number(row.tokens);
  }
  return [...byDay.values()];
}

function chartWindow(days: string[], now: Date): string[] {
  if (days.length <= maxChartDays) return days;
  const today = now.toISOString().slice(0, 10);
  const todayIndex = days.findIndex((day) => day >= today);
  const end = todayIndex === -1 ? days.length : todayIndex + 1;
  return days.slice(Math.max(end - maxChartDays, 0), Math.max(end, maxChartDays));
}

function utcDays(start: Date, end: Date): string[] {
  const days: string[] = [];
  const cursor = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()));
  while (cursor < end) {
    days.push(cursor.toISOString().slice(0, 10));
    cursor.setUTCDate(cursor.getUTCDate() + 1);
  }
  return days;
}
