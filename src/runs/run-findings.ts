import { asc, eq } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { findings } from '../db/schema/index.ts';

/** Lists a run's findings by path, then line, then rule. */
export async function listRunFindings(db: Database | Transaction, runId: string) {
  return db
    .select()
    .from(findings)
    .where(eq(findings.runId, runId))
    .orderBy(asc(findings.path), asc(findings.startLine), asc(findings.ruleId));
}
