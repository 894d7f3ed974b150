import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { excerptMaskVersion } from '../../src/analysis/mask-version.ts';
import { remaskStoredExcerpts, selectOutdatedExcerpts } from '../../src/jobs/remask-excerpts.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { planNodes, type ExplainRow, type PlanNode } from '../helpers/query-plan.ts';
import { createRunWithFindings, createSignedInUser } from '../helpers/web.ts';

let context: TestContext;

const currentCount = 20_000;
const outdatedCount = 7;
const indexName = 'findings_mask_version_index';

function expectIndexScan(nodes: PlanNode[]) {
  expect(nodes.map((node) => node['Node Type'])).not.toContain('Seq Scan');
  const indexScans = nodes.filter((node) => node['Index Name'] !== undefined);
  expect(indexScans.map((node) => node['Index Name'])).toEqual([indexName]);
}

beforeAll(async () => {
  context = await createTestContext();
  const user = await createSignedInUser(context.db, { login: 'remask-plan-user' });
  const { run } = await createRunWithFindings(context.db, { userId: user.userId, findings: [] });
  // Many findings at the current version and a few under version 1, as after most rows of a
  // table were masked again.
  await context.db.execute(sql`
    INSERT INTO findings (run_id, path, start_line, end_line, rule_id, severity, message,
      excerpt, fingerprint, mask_version)
    SELECT ${run.id}::uuid, 'src/f' || i || '.ts', 1, 1, 'debug/console-log', 'warning',
      'Remove the console.log call.', 'console.log(x);', 'fp-' || i,
      CASE WHEN i <= ${outdatedCount} THEN 1 ELSE ${excerptMaskVersion} END
    FROM generate_series(1, ${outdatedCount + currentCount}) AS i
  `);
  await context.db.execute(sql`ANALYZE findings`);
});

afterAll(async () => {
  await context.close();
});

describe('remask-excerpts query', () => {
  it('has an index of outdated rows only', async () => {
    const [row] = await context.db.execute<{ indexdef: string }>(
      sql`SELECT indexdef FROM pg_indexes WHERE indexname = ${indexName}`,
    );
    // A raised excerptMaskVersion without a migration from `npx drizzle-kit generate` fails here.
    expect(row!.indexdef).toContain(`WHERE (mask_version < ${excerptMaskVersion})`);
  });

  it('reads outdated rows through the index', async () => {
    const query = selectOutdatedExcerpts(context.db, 500);
    const rows = await context.db.execute<ExplainRow>(sql`EXPLAIN (ANALYZE, FORMAT JSON) ${query}`);
    const nodes = planNodes(rows[0]!['QUERY PLAN'][0]!.Plan);

    expectIndexScan(nodes);
    expect(nodes[0]!['Actual Rows']).toBe(outdatedCount);
  });

  it('uses the index in a generic plan', async () => {
    // The job's prepared statement may switch to a generic plan, which plans the LIMIT
    // parameter without its value.
    const { sql: text } = selectOutdatedExcerpts(context.db, 500).toSQL();
    expect(text).toContain('$1');
    const rows = await context.database.sql
      .unsafe<ExplainRow[]>(`EXPLAIN (GENERIC_PLAN, FORMAT JSON) ${text}`)
      .simple();

    expectIndexScan(planNodes(rows[0]!['QUERY PLAN'][0]!.Plan));
  });

  it('masks the outdated rows', async () => {
    const outcome = await remaskStoredExcerpts(context);
    expect(outcome).toEqual({ rows: outdatedCount, changed: 0, more: false });
  });
});
