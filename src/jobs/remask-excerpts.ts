import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { analysisSliceMs } from '../analysis/analyze.ts';
import { remaskExcerptSteps } from '../analysis/excerpt.ts';
import { excerptMaskVersion } from '../analysis/mask-version.ts';
import { StepMeter, Turns, type Steps } from '../analysis/steps.ts';
import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import { findings } from '../db/schema/index.ts';

export const remaskExcerptsQueue = 'remask-excerpts';

/** Every ten minutes, after the run that each worker queues when it starts. */
export const remaskExcerptsCron = '*/10 * * * *';

/** Findings masked again in one transaction, which bounds its row locks and statement size. */
export const remaskBatchSize = 500;

/**
 * Batches in one job run, so one run ends after at most 50,000 rows and the next run goes on
 * where it stopped.
 */
export const remaskMaxBatches = 100;

interface StoredExcerpt {
  id: string;
  path: string;
  ruleId: string;
  excerpt: string;
  fingerprint: string;
}

/**
 * Outcome of `remaskStoredExcerpts`: rows masked again, those whose excerpt changed, and whether
 * rows may be left (every batch was full).
 */
export interface RemaskOutcome {
  rows: number;
  changed: number;
  more: boolean;
}

/**
 * Masks the excerpts of findings stored under an older `excerptMaskVersion` with the current
 * rules, and stores them with the current version, in batches of `batchSize` rows. Each batch
 * is one transaction that skips rows another worker has locked. It stops after `maxBatches`
 * batches or at a batch with fewer rows.
 *
 * A finding whose excerpt changes gets a new fingerprint too, because the old one hashes a line
 * with that secret in clear. With the rest of the line in the excerpt, the old hash could
 * confirm a guess at a short secret. The line itself is not stored, so the new fingerprint
 * hashes the rule, the path, the new excerpt and the finding's id, which keeps it unique in its
 * run.
 */
export async function remaskStoredExcerpts(
  context: Pick<AppContext, 'db'>,
  options: { batchSize?: number; maxBatches?: number } = {},
): Promise<RemaskOutcome> {
  const batchSize = options.batchSize ?? remaskBatchSize;
  const maxBatches = options.maxBatches ?? remaskMaxBatches;
  const outcome: RemaskOutcome = { rows: 0, changed: 0, more: false };
  for (let batch = 0; batch < maxBatches; batch += 1) {
    const { rows, changed } = await remaskBatch(context, batchSize);
    outcome.rows += rows;
    outcome.changed += changed;
    if (rows < batchSize) {
      return outcome;
    }
  }
  outcome.more = true;
  return outcome;
}

/**
 * Selects and locks up to `batchSize` findings stored under an older `excerptMaskVersion`,
 * skipping rows that another transaction has locked. The version is a literal in the SQL text,
 * because a parameter there would keep the generic plan of the prepared statement from using
 * the partial `findings_mask_version_index`.
 */
export function selectOutdatedExcerpts(db: Database | Transaction, batchSize: number) {
  return db
    .select({
      id: findings.id,
      path: findings.path,
      ruleId: findings.ruleId,
      excerpt: findings.excerpt,
      fingerprint: findings.fingerprint,
    })
    .from(findings)
    .where(sql`${findings.maskVersion} < ${sql.raw(String(excerptMaskVersion))}`)
    .limit(batchSize)
    .for('update', { skipLocked: true });
}

async function remaskBatch(
  context: Pick<AppContext, 'db'>,
  batchSize: number,
): Promise<{ rows: number; changed: number }> {
  return context.db.transaction(async (tx) => {
    const stored = await selectOutdatedExcerpts(tx, batchSize);
    if (stored.length === 0) {
      return { rows: 0, changed: 0 };
    }
    const remasked = await new Turns(analysisSliceMs).run(remaskSteps(stored));
    const values = remasked.map(
      (row) => sql`(${row.id}::uuid, ${row.excerpt}, ${row.fingerprint})`,
    );
    await tx.execute(sql`
      UPDATE findings
      SET excerpt = remasked.excerpt,
          fingerprint = remasked.fingerprint,
          mask_version = ${excerptMaskVersion}
      FROM (VALUES ${sql.join(values, sql`, `)}) AS remasked (id, excerpt, fingerprint)
      WHERE findings.id = remasked.id
    `);
    const changed = remasked.filter((row, index) => row.excerpt !== stored[index]!.excerpt);
    return { rows: stored.length, changed: changed.length };
  });
}

function* remaskSteps(rows: readonly StoredExcerpt[]): Steps<StoredExcerpt[]> {
  const meter = new StepMeter();
  const remasked: StoredExcerpt[] = [];
  for (const row of rows) {
    const excerpt = yield* remaskExcerptSteps(row.excerpt, row.path);
    if (excerpt === row.excerpt) {
      remasked.push(row);
    } else {
      const fingerprint = createHash('sha256')
        .update([row.ruleId, row.path, excerpt, row.id].join('\0'))
        .digest('hex');
      remasked.push({ ...row, excerpt, fingerprint });
    }
    if (meter.count(row.excerpt.length)) {
      yield;
    }
  }
  return remasked;
}

/** Runs `remaskStoredExcerpts` as the job does, and logs what it masked. */
export async function handleRemaskExcerpts(context: AppContext): Promise<void> {
  const outcome = await remaskStoredExcerpts(context);
  if (outcome.rows > 0) {
    context.logger.info(
      { event: 'job.remask_excerpts', ...outcome, maskVersion: excerptMaskVersion },
      'masked stored excerpts again with the current secret rules',
    );
  }
}
