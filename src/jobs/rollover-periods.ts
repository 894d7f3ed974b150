import { sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import { periodEnd } from '../usage/period.ts';
import { resetUsage } from '../usage/plans.ts';

export const rolloverPeriodsQueue = 'rollover-periods';

/** Every ten minutes, so a period ends at most ten minutes late. */
export const rolloverPeriodsCron = '*/10 * * * *';

/**
 * Starts a new billing period for every user whose period has ended. The new period starts
 * at the last boundary at or before `now`, not at the time the job ran, so a late job does not
 * shift the periods. The user's period anchor stays as it is, so monthly boundaries keep its
 * day of month (see `periodEnd`).
 */
export async function rolloverPeriods(context: AppContext, now = new Date()): Promise<number> {
  const { db, config } = context;
  // NOTE: every user is read on each run, because a period can be shorter than a day (the
  // first one after BILLING_PERIOD changes). A stored, indexed period end would scale better.
  const candidates = await db.execute<{
    id: string;
    period_started_at: string | Date;
    period_anchor_at: string | Date;
  }>(sql`
    SELECT id, period_started_at, period_anchor_at FROM users
    WHERE period_started_at < ${now.toISOString()}::timestamptz
  `);

  let rolled = 0;
  for (const candidate of candidates) {
    const start = new Date(candidate.period_started_at);
    const anchor = new Date(candidate.period_anchor_at);
    let end = periodEnd(start, config.BILLING_PERIOD, anchor);
    if (end > now) continue;
    while (periodEnd(end, config.BILLING_PERIOD, anchor) <= now) {
      end = periodEnd(end, config.BILLING_PERIOD, anchor);
    }
    const reset = await resetUsage(db, config, {
      userId: candidate.id,
      changedBy: 'system',
      reason: 'period_rollover',
      periodStart: end,
      expectedPeriodStart: start,
    });
    if (reset) rolled++;
  }
  if (rolled > 0) {
    context.logger.info({ event: 'job.rollover_periods', users: rolled }, 'billing periods rolled over');
  }
  return rolled;
}
