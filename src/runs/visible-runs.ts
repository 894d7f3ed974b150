import { and, desc, eq, ne, sql } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { installations, prRuns, type RunStatus } from '../db/schema/index.ts';
import type { UnavailableReason } from '../github/installation-unavailable.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}

/** The fields of a run's installation that decide whether its fixes can be requested or applied. */
export type RunInstallation = Pick<
  typeof installations.$inferSelect,
  'accountLogin' | 'suspendedAt' | 'deletedAt'
>;

/** Columns of RunInstallation, for a select. */
export const runInstallationColumns = {
  accountLogin: installations.accountLogin,
  suspendedAt: installations.suspendedAt,
  deletedAt: installations.deletedAt,
};

/**
 * Returns the run with its installation's account and marks when the run belongs to an
 * installation the user owns, else null. Callers return 404 for both "missing" and "someone
 * else's", so ids of other users' runs leak nothing.
 */
export async function findVisibleRunWithInstallation(db: Database, userId: string, runId: string) {
  if (!isUuid(runId)) return null;
  const [row] = await db
    .select({ run: prRuns, installation: runInstallationColumns })
    .from(prRuns)
    .innerJoin(installations, eq(installations.id, prRuns.installationId))
    .where(and(eq(prRuns.id, runId), eq(installations.userId, userId)))
    .limit(1);
  return row ?? null;
}

/** Returns the run when it belongs to an installation the user owns, else null. */
export async function findVisibleRun(db: Database, userId: string, runId: string) {
  const row = await findVisibleRunWithInstallation(db, userId, runId);
  return row?.run ?? null;
}

/** An installation's state as its marks record it. */
export type InstallationState = 'active' | UnavailableReason;

/**
 * Returns the state that the installation's marks record. An uninstall outranks a suspension,
 * because only installing the app again clears it.
 */
export function installationState(installation: RunInstallation): InstallationState {
  if (installation.deletedAt) return 'uninstalled';
  if (installation.suspendedAt) return 'suspended';
  return 'active';
}

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
    .select(runInstallationColumns)
    .from(installations)
    .where(eq(installations.id, installationId));
  const [row] = options.lockForUpdate ? await query.for('update') : await query.limit(1);
  return row ?? null;
}

/**
 * Lists the user's runs, newest first, optionally for one repository and pull request, each with
 * its installation's account and marks.
 */
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
  return db
    .select({ run: prRuns, installation: runInstallationColumns })
    .from(prRuns)
    .innerJoin(installations, eq(installations.id, prRuns.installationId))
    .where(and(...conditions))
    .orderBy(desc(prRuns.createdAt), desc(prRuns.id))
    .limit(filter.limit);
}

/**
 * Reads the newest run of the run's pull request that is not superseded, with its
 * installation's account and owner, or null. With `ownerId`, only runs of installations that
 * user owns count. Runs are ordered by the time of the event that created them, as
 * supersedeOlderRuns compares them, and then by creation.
 */
async function findNewestActiveRun(
  db: Database,
  run: Pick<typeof prRuns.$inferSelect, 'id' | 'repositoryId' | 'prNumber'>,
  ownerId?: string,
) {
  const conditions = [
    eq(prRuns.repositoryId, run.repositoryId),
    eq(prRuns.prNumber, run.prNumber),
    ne(prRuns.id, run.id),
    ne(prRuns.status, 'superseded'),
  ];
  if (ownerId !== undefined) conditions.push(eq(installations.userId, ownerId));
  const [row] = await db
    .select({
      id: prRuns.id,
      status: prRuns.status,
      installationId: prRuns.installationId,
      accountLogin: installations.accountLogin,
      ownerId: installations.userId,
    })
    .from(prRuns)
    .innerJoin(installations, eq(installations.id, prRuns.installationId))
    .where(and(...conditions))
    .orderBy(sql`${prRuns.prUpdatedAt} DESC NULLS LAST`, desc(prRuns.createdAt), desc(prRuns.id))
    .limit(1);
  return row ?? null;
}

/**
 * Returns the id and status of the newest run of the run's pull request that the user can see
 * and that is not superseded, or null.
 */
export async function findNewestRun(
  db: Database,
  userId: string,
  run: Pick<typeof prRuns.$inferSelect, 'id' | 'repositoryId' | 'prNumber'>,
): Promise<{ id: string; status: RunStatus } | null> {
  const row = await findNewestActiveRun(db, run, userId);
  return row ? { id: row.id, status: row.status } : null;
}

/** The installation and account of a run that the user does not own. */
export interface OtherInstallationRun {
  installationId: number;
  accountLogin: string;
  /**
   * False while no `installation.created` event has named who installed the app there, as for
   * an installation that Fixwright first learned of from a pull_request event.
   */
  hasOwner: boolean;
}

/**
 * Builds the sentence that names who sees `runs`, the runs of another installation. Each
 * installation's runs are listed only for the user who installed the app there, and for no one
 * while Fixwright has not recorded that user.
 */
export function describeRunListing(runs: 'that run' | 'its run' | 'their runs', hasOwner: boolean): string {
  const listed = `${runs} ${runs === 'their runs' ? 'are' : 'is'} listed`;
  if (!hasOwner) {
    return (
      `Fixwright has not recorded who installed the app there yet, so ${listed} for no one ` +
      'until an installation event names them.'
    );
  }
  const sentence = `${listed} for the user who installed the app there.`;
  return sentence.charAt(0).toUpperCase() + sentence.slice(1);
}

/**
 * Returns the installation of the newest run of the run's pull request that is not superseded,
 * when the user does not own that installation, or null. findNewestRun leaves such a run out,
 * as after the repository moved to another account. The superseded run's pages name that
 * installation instead of a run that the user gets 404 for.
 */
export async function findNewestRunOfOtherOwner(
  db: Database,
  userId: string,
  run: Pick<typeof prRuns.$inferSelect, 'id' | 'repositoryId' | 'prNumber'>,
): Promise<OtherInstallationRun | null> {
  const row = await findNewestActiveRun(db, run);
  if (!row || row.ownerId === userId) return null;
  return { installationId: row.installationId, accountLogin: row.accountLogin, hasOwner: row.ownerId !== null };
}

/**
 * Target of the link from a superseded run's pages to its newer commits: the newest run that
 * the user can open, the installation of a newer run of another owner, or null while the newer
 * commit has no run yet.
 */
export type NewestRunLink =
  | { kind: 'run'; id: string }
  | ({ kind: 'other_installation' } & OtherInstallationRun)
  | null;

/** Finds the NewestRunLink of a superseded run for the user. */
export async function findNewestRunLink(
  db: Database,
  userId: string,
  run: Pick<typeof prRuns.$inferSelect, 'id' | 'repositoryId' | 'prNumber'>,
): Promise<NewestRunLink> {
  const visible = await findNewestRun(db, userId, run);
  if (visible) return { kind: 'run', id: visible.id };
  const other = await findNewestRunOfOtherOwner(db, userId, run);
  return other ? { kind: 'other_installation', ...other } : null;
}
