import { sql } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import type { Database } from '../db/client.ts';
import { periodEnd } from '../usage/period.ts';
import { resetUsage, UserNotFoundError } from '../usage/plans.ts';
import { toSafeError } from '../errors/safe-error.ts';

export const rolloverPeriodsQueue = 'rollover-periods';

/** Every ten minutes, so a period ends at most ten minutes late. */
export const rolloverPeriodsCron = '*/10 * * * *';

/** Rows fetched from the candidates cursor at once, which bounds the memory of a run. */
export const rolloverBatchSize = 1000;

type Candidate = {
  id: string;
  period_started_at: string | Date;
  period_anchor_at: string | Date;
};

interface RecomputedEnd {
  id: string;
  start: Date;
  anchor: Date;
  end: Date;
}

/**
 * Returns the query of users the rollover job must look at: those whose stored period end has
 * passed, and those whose end was computed for another BILLING_PERIOD (or never computed).
 * Every condition is a range on the index (period_end_billing_period, period_ends_at), so
 * the query reads only these rows. A b-tree index cannot serve `<>`, so "another
 * BILLING_PERIOD" is written as `<` or `>`.
 */
export function rolloverCandidatesQuery(billingPeriod: string, now: Date) {
  return sql`
    SELECT id, period_started_at, period_anchor_at FROM users
    WHERE (period_end_billing_period = ${billingPeriod}
        AND period_ends_at <= ${now.toISOString()}::timestamptz)
      OR period_end_billing_period < ${billingPeriod}
      OR period_end_billing_period > ${billingPeriod}
  `;
}

/** Returns the statement that opens the cursor `rollover_candidates` on the candidates query. */
export function declareCandidatesCursor(billingPeriod: string, now: Date) {
  return sql`DECLARE rollover_candidates NO SCROLL CURSOR FOR ${rolloverCandidatesQuery(billingPeriod, now)}`;
}

/**
 * Starts a new billing period for every user whose period has ended. The new period starts
 * at the last boundary at or before `now`, not at the time the job ran, so a late job does not
 * shift the periods. The user's period anchor stays as it is, so monthly boundaries keep its
 * day of month (see `periodEnd`).
 *
 * The job reads users through the index on their stored period end. An end stored for
 * another BILLING_PERIOD is first recomputed from the period start and anchor. So after the
 * setting changes, no user rolls over early on an old end, and a user whose new end has
 * passed rolls over in the same run. Returns the number of users rolled over.
 */
export async function rolloverPeriods(context: AppContext, now = new Date()): Promise<number> {
  const billingPeriod = context.config.BILLING_PERIOD;
  let rolled = 0;
  let recomputed = 0;
  let failed = 0;
  // One query through a cursor reads each candidate once, however many there are, and keeps
  // one batch in memory. Re-running a LIMIT query per batch would rescan the rows already
  // done when most rows are candidates, as after a BILLING_PERIOD change. Resets and stored
  // ends go through other connections. The cursor's snapshot is taken at DECLARE, so rows
  // changed meanwhile are read as they were, and the writes check for that.
  await context.db.transaction(
    async (reader) => {
      // Plan the cursor for reading every row, as the job does, not for the first rows.
      await reader.execute(sql`SET LOCAL cursor_tuple_fraction = 1`);
      await reader.execute(declareCandidatesCursor(billingPeriod, now));
      for (;;) {
        const candidates = await reader.execute<Candidate>(
          sql`FETCH ${sql.raw(String(rolloverBatchSize))} FROM rollover_candidates`,
        );
        const result = await processCandidates(context, candidates, now);
        rolled += result.rolled;
        recomputed += result.recomputed;
        failed += result.failed;
        if (candidates.length < rolloverBatchSize) break;
      }
    },
    { accessMode: 'read only' },
  );
  if (recomputed > 0) {
    context.logger.info(
      { event: 'job.period_ends_recomputed', users: recomputed, billingPeriod },
      'period ends recomputed for the configured BILLING_PERIOD',
    );
  }
  if (rolled > 0) {
    context.logger.info({ event: 'job.rollover_periods', users: rolled }, 'billing periods rolled over');
  }
  if (failed > 0) {
    // Failing the job makes pg-boss record it, and the next run tries these users again.
    throw new Error(
      `Rolling over the billing period failed for ${failed} user(s). ` +
        'The job.rollover_periods.user_failed log lines name them and the cause.',
    );
  }
  return rolled;
}

/**
 * Computes each candidate's period end under BILLING_PERIOD from its start and anchor. Rolls
 * over those whose end is at or before `now`, and stores the end of the others. Returns how
 * many users it rolled over, how many ends it stored and how many resets failed.
 */
async function processCandidates(
  context: AppContext,
  candidates: Candidate[],
  now: Date,
): Promise<{ rolled: number; recomputed: number; failed: number }> {
  const { db, config } = context;
  const billingPeriod = config.BILLING_PERIOD;
  const notEnded: RecomputedEnd[] = [];
  let rolled = 0;
  let failed = 0;
  for (const candidate of candidates) {
    const start = new Date(candidate.period_started_at);
    const anchor = new Date(candidate.period_anchor_at);
    let end = periodEnd(start, billingPeriod, anchor);
    if (end > now) {
      notEnded.push({ id: candidate.id, start, anchor, end });
      continue;
    }
    while (periodEnd(end, billingPeriod, anchor) <= now) {
      end = periodEnd(end, billingPeriod, anchor);
    }
    let reset;
    try {
      reset = await resetUsage(db, config, {
        userId: candidate.id,
        changedBy: 'system',
        reason: 'period_rollover',
        periodStart: end,
        expectedPeriodStart: start,
      });
    } catch (error) {
      // A user deleted since the cursor read it has no period left to roll over.
      if (error instanceof UserNotFoundError) continue;
      // One user's failure must not keep every later user in its old period.
      failed++;
      context.logger.error(
        { event: 'job.rollover_periods.user_failed', userId: candidate.id, err: toSafeError(error) },
        'rolling over a billing period failed',
      );
      continue;
    }
    if (reset) rolled++;
  }
  const recomputed = await storePeriodEnds(db, billingPeriod, notEnded);
  return { rolled, recomputed, failed };
}

/**
 * Stores recomputed period ends of periods that have not ended, and returns how many rows
 * it updated. A row whose start or anchor changed since it was read keeps the end that its
 * new writer stored.
 *
 * The rows are locked in id order first, the order in which `users apply-limits` locks its
 * batch. An UPDATE alone locks them in its join's order, so a concurrent batch of that command
 * that holds some of the same rows could deadlock with it, and PostgreSQL would abort one.
 */
async function storePeriodEnds(db: Database, billingPeriod: string, ends: RecomputedEnd[]): Promise<number> {
  if (ends.length === 0) return 0;
  const rows = ends.map((row) => ({
    id: row.id,
    started_at: row.start.toISOString(),
    anchor_at: row.anchor.toISOString(),
    ends_at: row.end.toISOString(),
  }));
  const ids = JSON.stringify(ends.map((row) => row.id));
  return db.transaction(async (tx) => {
    await tx.execute(sql`
      SELECT id FROM users
      WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text(${ids}::jsonb))
      ORDER BY id FOR NO KEY UPDATE
    `);
    // The app reads timestamps to the millisecond, so the stored ones are compared truncated.
    const updated = await tx.execute<{ id: string }>(sql`
      UPDATE users SET period_ends_at = v.ends_at, period_end_billing_period = ${billingPeriod}
      FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
        AS v(id uuid, started_at timestamptz, anchor_at timestamptz, ends_at timestamptz)
      WHERE users.id = v.id
        AND date_trunc('milliseconds', users.period_started_at) = v.started_at
        AND date_trunc('milliseconds', users.period_anchor_at) = v.anchor_at
      RETURNING users.id
    `);
    return updated.length;
  });
}
