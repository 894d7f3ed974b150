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
 * Stores the plan limits of `config` as the ones the service runs with. Called at each start,
 * so the last process to start sets them.
 */
export async function recordServicePlanLimits(db: Database, config: Config): Promise<void> {
  const limits = planLimits(config);
  await db
    .insert(servicePlanLimits)
    .values(plans.map((plan) => ({ plan, tokenLimit: limits[plan] })))
    .onConflictDoUpdate({
      target: servicePlanLimits.plan,
      set: { tokenLimit: sql`excluded.token_limit`, recordedAt: sql`now()` },
    });
}

/** Raised when the command's environment sets a plan limit other than the service's. */
export class PlanLimitMismatchError extends Error {
  override name = 'PlanLimitMismatchError';
}

/**
 * Returns `config` with the plan limits that the service recorded at its last start, for a
 * command that applies plan limits. A limit that `environment` sets must equal the recorded
 * one, or PlanLimitMismatchError names both values. Before any service start has recorded
 * limits, `config` is returned unchanged.
 */
export async function withServicePlanLimits(
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
    // A variable set to nothing counts as unset, as loadConfig reads it.
    const setHere = (environment[setting] ?? '').trim() !== '';
    if (setHere && own[plan] !== tokenLimit) {
      mismatches.push(
        `${setting} is ${describeLimit(own[plan])} here, but the service started at ` +
          `${recordedAt.toISOString()} with ${describeLimit(tokenLimit)}.`,
      );
    }
    resolved[setting] = tokenLimit;
  }
  if (mismatches.length > 0) {
    throw new PlanLimitMismatchError(
      `${mismatches.join(' ')} Nothing was changed. Set the same value as the service, or ` +
        'unset it to use the service\'s, or restart the service with the new value first, so ' +
        'that it records that value.',
    );
  }
  return resolved;
}

function describeLimit(limit: number): string {
  return limit < 0 ? '-1 (unlimited)' : String(limit);
}
