import { eq } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { users, type Plan, type Provider } from '../db/schema/index.ts';
import { storedKeyProviders } from '../keys/stored-key-providers.ts';
import { currentPeriodEnd } from './period.ts';

/** Share of the limit at and above which the dashboard and API warn. */
export const nearLimitPercent = 90;

export interface UsageStats {
  plan: Plan;
  /** Tokens per period, or -1 for unlimited. */
  limit: number;
  unlimited: boolean;
  used: number;
  reserved: number;
  /** Tokens left to reserve; null when unlimited. */
  remaining: number | null;
  /**
   * (used + reserved) / limit × 100, rounded down to one decimal and at most 100, or 0 when
   * unlimited. It is rounded down so that it reaches 90 and 100 only when the tokens do.
   */
  percent: number;
  nearLimit: boolean;
  periodStart: string;
  periodEnd: string;
  ownKeys: Record<Provider, boolean>;
}

export async function getUsageStats(
  db: Database,
  config: Config,
  userId: string,
): Promise<UsageStats> {
  const user = await db.query.users.findFirst({ where: eq(users.id, userId) });
  if (!user) throw new Error(`User ${userId} not found.`);

  const unlimited = user.tokenLimit < 0;
  const committed = user.tokensUsed + user.tokensReserved;
  let percent = 0;
  if (user.tokenLimit === 0) percent = 100;
  else if (!unlimited) percent = Math.floor((committed * 1000) / user.tokenLimit) / 10;
  const providers = await storedKeyProviders(db, userId);
  return {
    plan: user.plan,
    limit: user.tokenLimit,
    unlimited,
    used: user.tokensUsed,
    reserved: user.tokensReserved,
    remaining: unlimited ? null : Math.max(user.tokenLimit - committed, 0),
    percent: Math.min(percent, 100),
    nearLimit: !unlimited && percent >= nearLimitPercent,
    periodStart: user.periodStartedAt.toISOString(),
    periodEnd: currentPeriodEnd(user, config.BILLING_PERIOD).toISOString(),
    ownKeys: { groq: providers.has('groq'), gemini: providers.has('gemini') },
  };
}
