import { asc, eq } from 'drizzle-orm';
import { analysisSliceMs } from '../analysis/analyze.ts';
import { remaskExcerptSteps } from '../analysis/excerpt.ts';
import { excerptMaskVersion } from '../analysis/mask-version.ts';
import { StepMeter, Turns, type Steps } from '../analysis/steps.ts';
import type { Database, Transaction } from '../db/client.ts';
import { findings } from '../db/schema/index.ts';

type FindingRow = typeof findings.$inferSelect;

/**
 * Lists a run's findings by path, then line, then rule. The excerpt of a row stored under an
 * older `excerptMaskVersion` is masked with the current rules, so no read shows what the
 * `remask-excerpts` job has not rewritten yet. The masking returns to the event loop after
 * each `analysisSliceMs`.
 */
export async function listRunFindings(
  db: Database | Transaction,
  runId: string,
): Promise<FindingRow[]> {
  const rows = await db
    .select()
    .from(findings)
    .where(eq(findings.runId, runId))
    .orderBy(asc(findings.path), asc(findings.startLine), asc(findings.ruleId));
  if (rows.every((row) => row.maskVersion >= excerptMaskVersion)) {
    return rows;
  }
  return new Turns(analysisSliceMs).run(remaskRowsSteps(rows));
}

function* remaskRowsSteps(rows: FindingRow[]): Steps<FindingRow[]> {
  const meter = new StepMeter();
  const masked: FindingRow[] = [];
  for (const row of rows) {
    if (row.maskVersion >= excerptMaskVersion) {
      masked.push(row);
    } else {
      const excerpt = yield* remaskExcerptSteps(row.excerpt, row.path);
      masked.push({ ...row, excerpt, maskVersion: excerptMaskVersion });
    }
    if (meter.count(row.excerpt.length)) {
      yield;
    }
  }
  return masked;
}
