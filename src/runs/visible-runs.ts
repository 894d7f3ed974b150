import { and, desc, eq, sql } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { installations, prRuns } from '../db/schema/index.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}

/**
 * Returns the run when it belongs to an installation the user owns, else null. Callers return
 * 404 for both "missing" and "someone else's", so ids of other users' runs leak nothing.
 */
export async function findVisibleRun(db: Database, userId: string, runId: string) {
  if (!isUuid(runId)) return null;
  const [row] = await db
    .select({ run: prRuns })
    .from(prRuns)
    .innerJoin(installations, eq(installations.id, prRuns.installationId))
    .where(and(eq(prRuns.id, runId), eq(installations.userId, userId)))
    .limit(1);
  return row?.run ?? null;
}

/** The fields of a run's installation that decide whether its fixes can be requested or applied. */
export type RunInstallation = Pick<
  typeof installations.$inferSelect,
  'accountLogin' | 'suspendedAt' | 'deletedAt'
>;

/**
 * Returns the account and the suspended and deleted marks of an installation, or null. With
 * `lockForUpdate`, the row stays locked until the caller's transaction ends.
 */
export async function findRunInstallation(
  db: Database | Transaction,
  installationId: number,
  options: { lockForUpdate?: boolean } = {},
): Promise<RunInstallation | null> {
  const query = db
    .select({
      accountLogin: installations.accountLogin,
      suspendedAt: installations.suspendedAt,
      deletedAt: installations.deletedAt,
    })
    .from(installations)
    .where(eq(installations.id, installationId));
  const [row] = options.lockForUpdate ? await query.for('update') : await query.limit(1);
  return row ?? null;
}

/** Lists the user's runs, newest first, optionally for one repository and pull request. */
export async function listVisibleRuns(
  db: Database,
  userId: string,
  filter: { repository?: string; prNumber?: number; limit: number },
) {
  const conditions = [eq(installations.userId, userId)];
  if (filter.repository) {
    // GitHub owner and repository names are case-insensitive, so both sides are lowered,
    // as in the index on lower(repository).
    conditions.push(sql`lower(${prRuns.repository}) = lower(${filter.repository})`);
  }
  if (filter.prNumber !== undefined) conditions.push(eq(prRuns.prNumber, filter.prNumber));
  const rows = await db
    .select({ run: prRuns })
    .from(prRuns)
    .innerJoin(installations, eq(installations.id, prRuns.installationId))
    .where(and(...conditions))
    .orderBy(desc(prRuns.createdAt), desc(prRuns.id))
    .limit(filter.limit);
  return rows.map((row) => row.run);
}
