import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  declareCandidatesCursor,
  rolloverCandidatesQuery,
  rolloverPeriods,
} from '../../src/jobs/rollover-periods.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { planNodes, type ExplainRow, type PlanNode } from '../helpers/query-plan.ts';

let context: TestContext;

const userCount = 20_000;
const dueCount = 5;
const now = new Date('2027-06-15T12:00:00Z');

/** Runs the candidates query with EXPLAIN ANALYZE and returns every node of its plan. */
async function explainQuery(): Promise<PlanNode[]> {
  const query = rolloverCandidatesQuery('monthly', now);
  const rows = await context.db.execute<ExplainRow>(sql`EXPLAIN (ANALYZE, FORMAT JSON) ${query}`);
  return planNodes(rows[0]!['QUERY PLAN'][0]!.Plan);
}

/** Returns the plan nodes of the job's cursor, planned with the job's cursor_tuple_fraction. */
async function explainCursor(): Promise<PlanNode[]> {
  return context.db.transaction(async (tx) => {
    await tx.execute(sql`SET LOCAL cursor_tuple_fraction = 1`);
    const rows = await tx.execute<ExplainRow>(
      sql`EXPLAIN (FORMAT JSON) ${declareCandidatesCursor('monthly', now)}`,
    );
    return planNodes(rows[0]!['QUERY PLAN'][0]!.Plan);
  });
}

function expectIndexOnly(nodes: PlanNode[]) {
  expect(nodes.map((node) => node['Node Type'])).not.toContain('Seq Scan');
  const indexScans = nodes.filter((node) => node['Index Name'] !== undefined);
  expect(indexScans.length).toBeGreaterThan(0);
  for (const scan of indexScans) expect(scan['Index Name']).toBe('users_period_end_idx');
}

beforeAll(async () => {
  context = await createTestContext({ BILLING_PERIOD: 'monthly' });
  // Periods started in the month before `now`, so they end in the month after it. The
  // first `dueCount` users started 40 days before it, so their periods have ended.
  await context.db.execute(sql`
    INSERT INTO users (login, tokens_used, period_started_at, period_anchor_at, period_ends_at,
      period_end_billing_period)
    SELECT 'plan-' || i, 10, start, start, start + interval '1 month', 'monthly'
    FROM generate_series(1, ${userCount}) AS i,
      LATERAL (SELECT ${now.toISOString()}::timestamptz - CASE
        WHEN i <= ${dueCount} THEN interval '40 days'
        ELSE make_interval(mins => 1 + i % (28 * 24 * 60))
      END AS start) AS s
  `);
  await context.db.execute(sql`ANALYZE users`);
});
afterAll(async () => {
  await context.close();
});

describe('rollover candidates query', () => {
  it('reads the due users through the index', async () => {
    const nodes = await explainQuery();
    expectIndexOnly(nodes);
    expect(nodes[0]!['Actual Rows']).toBe(dueCount);
  });

  it('plans the cursor on the index', async () => {
    expectIndexOnly(await explainCursor());
  });

  it('returns the due users to the job', async () => {
    expect(await rolloverPeriods(context, now)).toBe(dueCount);
    const [reset] = await context.db.execute<{ count: number }>(sql`
      SELECT count(*)::int AS count FROM users WHERE tokens_used = 0
    `);
    expect(reset!.count).toBe(dueCount);
    expect(await rolloverPeriods(context, now)).toBe(0);
  });
});
