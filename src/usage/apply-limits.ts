import { sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { plans, type Plan } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { capUsage, changePlanInTransaction, planLimits } from './plans.ts';

/**
 * Outcome of applying the configured limit to the users of one plan, or in a dry run the
 * outcome it would have.
 */
export interface PlanLimitSummary {
  plan: Plan;
  /** The configured limit of the plan, or -1 for unlimited. */
  limit: number;
  /** Users on the plan when the command started. */
  checked: number;
  /** Users whose stored limit was replaced, or in a dry run would be. */
  changed: number;
  /** Users changed, by their stored limit before the change. */
  changedFrom: Map<number, number>;
  /** Users changed whose usage was above the new limit and was capped at it. */
  capped: number;
}

export interface ApplyLimitsReport {
  dryRun: boolean;
  /** One entry per plan checked, in the order free, pro, enterprise. */
  plans: PlanLimitSummary[];
}

export interface ApplyLimitsOptions {
  /** Plan whose users are checked. All users are checked when it is left out. */
  plan?: Plan;
  /** When true, only reads and reports the users whose limit differs. */
  dryRun?: boolean;
  /** Recorded in `plan_changes.changed_by`, such as "cli:<os user>". */
  changedBy: string;
  /** Users changed per transaction (default 100). */
  batchSize?: number;
  /**
   * Called after each page of users, with the users read so far whose limit differed. In a
   * real run those are committed, less any that switched plan meanwhile.
   */
  onProgress?: (progress: { processed: number }) => void;
}

type StaleUserRow = {
  id: string;
  plan: Plan;
  token_limit: string | number;
  tokens_used: string | number;
};

/**
 * Applies the configured limit of each user's plan to every user (or every user on
 * `options.plan`) whose stored limit differs. It runs the code of choosing the plan the user
 * already has, so the period and usage are kept, usage is capped at a lower limit,
 * reservations in flight are kept, and each change is recorded in `plan_changes`.
 *
 * Users are read by id in pages of `batchSize` without locks, and each page is changed in one
 * transaction that locks its users one by one, so at most `batchSize` rows are locked at a time.
 * A user who switched plan or got the configured limit after being read is left alone. A run
 * that fails or is interrupted keeps the pages already committed, and running it again
 * changes only the users still left.
 */
export async function applyPlanLimits(
  db: Database,
  config: Config,
  logger: Logger,
  options: ApplyLimitsOptions,
): Promise<ApplyLimitsReport> {
  const batchSize = options.batchSize ?? 100;
  const dryRun = options.dryRun ?? false;
  const limits = planLimits(config);
  const checkedPlans = options.plan ? [options.plan] : [...plans];
  const summaries = new Map<Plan, PlanLimitSummary>();
  for (const plan of checkedPlans) {
    summaries.set(plan, { plan, limit: limits[plan], checked: 0, changed: 0, changedFrom: new Map(), capped: 0 });
  }

  const counts = await db.execute<{ plan: Plan; users: string | number }>(
    sql`SELECT plan, count(*) AS users FROM users GROUP BY plan`,
  );
  for (const row of counts) {
    const summary = summaries.get(row.plan);
    if (summary) summary.checked = Number(row.users);
  }

  let afterId: string | null = null;
  let processed = 0;
  for (;;) {
    const page = await readStaleUsers(db, limits, checkedPlans, afterId, batchSize);
    if (page.length === 0) break;
    if (dryRun) {
      for (const row of page) {
        const usedBefore = Number(row.tokens_used);
        const usedAfter = capUsage(usedBefore, limits[row.plan]);
        countChange(summaries.get(row.plan)!, Number(row.token_limit), usedBefore > usedAfter);
      }
    } else {
      await db.transaction(async (tx) => {
        for (const row of page) {
          const input = { userId: row.id, plan: row.plan, changedBy: options.changedBy, limitOnly: true };
          const result = await changePlanInTransaction(tx, config, input);
          if (!result.changed) continue;
          countChange(summaries.get(row.plan)!, result.limitBefore, result.usedBefore > result.usedAfter);
        }
      });
    }
    afterId = page.at(-1)!.id;
    processed += page.length;
    options.onProgress?.({ processed });
  }

  const report: ApplyLimitsReport = { dryRun, plans: [...summaries.values()] };
  logger.info(
    {
      event: dryRun ? 'users.limits_checked' : 'users.limits_applied',
      changedBy: options.changedBy,
      plans: report.plans.map((summary) => ({
        plan: summary.plan,
        limit: summary.limit,
        checked: summary.checked,
        changed: summary.changed,
        capped: summary.capped,
      })),
    },
    dryRun ? 'plan limits checked without changes' : 'plan limits applied',
  );
  return report;
}

/** Reads the next `batchSize` users after `afterId`, by id, whose stored limit differs. */
function readStaleUsers(
  db: Database,
  limits: Record<Plan, number>,
  checkedPlans: Plan[],
  afterId: string | null,
  batchSize: number,
) {
  const configured = sql`CASE plan
    WHEN 'free' THEN ${limits.free}::bigint
    WHEN 'pro' THEN ${limits.pro}::bigint
    WHEN 'enterprise' THEN ${limits.enterprise}::bigint
  END`;
  const planList = sql.join(
    checkedPlans.map((plan) => sql`${plan}`),
    sql`, `,
  );
  return db.execute<StaleUserRow>(sql`
    SELECT id, plan, token_limit, tokens_used FROM users
    WHERE plan IN (${planList})
      AND token_limit <> ${configured}
      ${afterId === null ? sql`` : sql`AND id > ${afterId}`}
    ORDER BY id
    LIMIT ${batchSize}
  `);
}

function countChange(summary: PlanLimitSummary, limitBefore: number, capped: boolean): void {
  summary.changed++;
  summary.changedFrom.set(limitBefore, (summary.changedFrom.get(limitBefore) ?? 0) + 1);
  if (capped) summary.capped++;
}
