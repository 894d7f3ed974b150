import type { AppContext } from '../../context.ts';
import { getDailyUsage } from '../../usage/daily-usage.ts';
import { getUsageStats } from '../../usage/stats.ts';
import type { TokenOwner } from '../../users/api-tokens.ts';

/** Loads what the usage widget shows: the allowance and the tokens per day of the period. */
export async function loadUsage(context: AppContext, userId: string) {
  const stats = await getUsageStats(context.db, context.config, userId);
  const days = await getDailyUsage(context.db, userId, {
    start: new Date(stats.periodStart),
    end: new Date(stats.periodEnd),
  });
  return { stats, days };
}

/** Users switch their own plan when PLAN_SELF_SERVICE=true; admins always may. */
export function canChangeOwnPlan(context: AppContext, user: TokenOwner): boolean {
  return context.config.PLAN_SELF_SERVICE || user.role === 'admin';
}
