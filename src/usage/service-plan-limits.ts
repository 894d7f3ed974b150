import { sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { plans, servicePlanLimits, type Plan } from '../db/schema/index.ts';
import { planLimits } from './plans.ts';

/** The setting that sets the token limit of each plan. */
export const planLimitSettings: Record<Plan, 'PLAN_FREE_TOKENS' | 'PLAN_PRO_TOKENS' | 'PLAN_ENTERPRISE_TOKENS'> = {
  free: 'PLAN_FREE_TOKENS',
  pro: 'PLAN_PRO_TOKENS',
  enterprise: 'PLAN_ENTERPRISE_TOKENS',
};

/**
 * Stores the plan limits and BILLING_PERIOD of `config` as the ones the service runs with.
 * Called at each start, so the last process to start sets them.
 */
export async function recordServiceSettings(db: Database, config: Config): Promise<void> {
  const limits = planLimits(config);
  const billingPeriod = config.BILLING_PERIOD;
  await db
    .insert(servicePlanLimits)
    .values(plans.map((plan) => ({ plan, tokenLimit: limits[plan], billingPeriod })))
    .onConflictDoUpdate({
      target: servicePlanLimits.plan,
      set: {
        tokenLimit: sql`excluded.token_limit`,
        billingPeriod: sql`excluded.billing_period`,
        recordedAt: sql`now()`,
      },
    });
}

/** Raised when the command's environment sets a plan limit or BILLING_PERIOD other than the service's. */
export class ServiceSettingMismatchError extends Error {
  override name = 'ServiceSettingMismatchError';
}

/**
 * Returns `config` with the plan limits and BILLING_PERIOD that the service recorded at its
 * last start, for a command that applies plan limits or computes period ends. A setting that
 * `environment` sets must equal the recorded one, or ServiceSettingMismatchError names both
 * values. Before any service start has recorded them, `config` is returned unchanged, and so is
 * its BILLING_PERIOD when the service that started last did not record one.
 */
export async function withServiceSettings(
  db: Database,
  config: Config,
  environment: NodeJS.ProcessEnv,
): Promise<Config> {
  const rows = await db.select().from(servicePlanLimits);
  if (rows.length === 0) return config;
  const own = planLimits(config);
  const resolved = { ...config };
  const mismatches: string[] = [];
  for (const { plan, tokenLimit, recordedAt } of rows) {
    const setting = planLimitSettings[plan];
    if (isSetIn(environment, setting) && own[plan] !== tokenLimit) {
      mismatches.push(
        `${setting} is ${describeLimit(own[plan])} here, but the service started at ` +
          `${recordedAt.toISOString()} with ${describeLimit(tokenLimit)}.`,
      );
    }
    resolved[setting] = tokenLimit;
  }
  const recorded = rows.find((row) => row.billingPeriod !== null);
  if (recorded?.billingPeriod) {
    if (isSetIn(environment, 'BILLING_PERIOD') && config.BILLING_PERIOD !== recorded.billingPeriod) {
      mismatches.push(
        `BILLING_PERIOD is ${config.BILLING_PERIOD} here, but the service started at ` +
          `${recorded.recordedAt.toISOString()} with ${recorded.billingPeriod}.`,
      );
    }
    resolved.BILLING_PERIOD = recorded.billingPeriod;
  }
  if (mismatches.length > 0) {
    throw new ServiceSettingMismatchError(
      `${mismatches.join(' ')} Nothing was changed. Set the same value as the service, or ` +
        'unset it to use the service\'s, or restart the service with the new value first, so ' +
        'that it records that value.',
    );
  }
  return resolved;
}

/** Returns whether `environment` sets `name`. A variable set to nothing counts as unset, as loadConfig reads it. */
function isSetIn(environment: NodeJS.ProcessEnv, name: string): boolean {
  return (environment[name] ?? '').trim() !== '';
}

function describeLimit(limit: number): string {
  return limit < 0 ? '-1 (unlimited)' : String(limit);
}
