import { sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import type { Transaction } from '../db/client.ts';
import { transactionDb } from './boss.ts';
import type { FixPressNoticeJobData } from './fix-press-notice.ts';

// The queue's name and the start of its waiting jobs live apart from the handler, because the
// handler imports report-run.ts (through publish-fix-press-notice.ts), which starts those jobs.

export const fixPressNoticeQueue = 'fix-press-notice';

/**
 * Starts the notice jobs that wait for the report of run `runId`, in the transaction that
 * stores the run's check run or report error, and returns the ids of the new jobs. pg-boss
 * 10.4 has no call that moves a job's start time, so each waiting job is cancelled and queued
 * again to start at once. The new jobs wait for the report's lock and then write their
 * notices, or point a press on another check run to the stored one, as for any notice of the
 * run. After a report error they end with that error.
 */
export async function startNoticesWaitingForReport(
  tx: Transaction,
  boss: PgBoss,
  runId: string,
): Promise<string[]> {
  const waiting = await tx.execute<{ id: string; data: FixPressNoticeJobData }>(sql`
    SELECT id, data FROM pgboss.job
    WHERE name = ${fixPressNoticeQueue} AND state = 'created' AND data->>'runId' = ${runId}
      AND data->>'waitsForReport' = 'true'
    ORDER BY created_on, id`);
  if (waiting.length === 0) return [];
  const db = transactionDb(tx);
  await boss.cancel(fixPressNoticeQueue, waiting.map((job) => job.id), { db });
  const started: string[] = [];
  for (const job of waiting) {
    const data: FixPressNoticeJobData = { ...job.data, waitsForReport: undefined };
    const id = await boss.send(fixPressNoticeQueue, data, { db });
    if (id !== null) started.push(id);
  }
  return started;
}
