import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rolloverCandidatesQuery, rolloverPeriods } from '../../src/jobs/rollover-periods.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let context: TestContext;

const userCount = 20_000;
const dueCount = 5;
const now = new Date('2027-06-15T12:00:00Z');

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  Plans?: PlanNode[];
}

function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

async function explain(billingPeriod: string): Promise<PlanNode[]> {
  const query = rolloverCandidatesQuery(billingPeriod, now, 1000);
  const rows = await context.db.execute<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
    sql`EXPLAIN (ANALYZE, FORMAT JSON) ${query}`,
  );
  return planNodes(rows[0]!['QUERY PLAN'][0]!.Plan);
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
    const nodes = await explain('monthly');
    const types = nodes.map((node) => node['Node Type']);
    expect(types).not.toContain('Seq Scan');
    const indexScans = nodes.filter((node) => node['Index Name'] !== undefined);
    expect(indexScans.length).toBeGreaterThan(0);
    for (const scan of indexScans) expect(scan['Index Name']).toBe('users_period_end_idx');
    expect(nodes[0]!['Actual Rows']).toBe(dueCount);
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
