import { eq } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { installations } from '../db/schema/index.ts';

export type UnavailableReason = 'suspended' | 'uninstalled';

/**
 * Raised when an installation can no longer act: it was suspended or the app was uninstalled.
 * Retrying cannot help, so job handlers record the message and complete the job. The message
 * names the account when `accountLogin` is known, and the step an owner of it must take.
 */
export class InstallationUnavailableError extends Error {
  override name = 'InstallationUnavailableError';
  readonly retryable = false;

  constructor(
    readonly installationId: number,
    readonly reason: UnavailableReason,
    /** Login of the installation's account, or null when only GitHub's error was read. */
    readonly accountLogin: string | null = null,
  ) {
    super(describeUnavailable(installationId, reason, accountLogin));
  }

  /** Fields that an HTTP error response adds to the message: the id, account and reason. */
  details(): { installationId: number; account: string | null; reason: UnavailableReason } {
    return { installationId: this.installationId, account: this.accountLogin, reason: this.reason };
  }
}

function describeUnavailable(
  installationId: number,
  reason: UnavailableReason,
  accountLogin: string | null,
): string {
  const installation =
    accountLogin === null
      ? `GitHub App installation ${installationId}`
      : `GitHub App installation ${installationId} on ${accountLogin}`;
  const account = accountLogin ?? 'the account';
  if (reason === 'suspended') {
    return (
      `${installation} is suspended. An owner of ${account} must unsuspend it in the GitHub ` +
      'App settings on GitHub before Fixwright can work there again.'
    );
  }
  return (
    `${installation} no longer exists because the app was uninstalled. Install the app on ` +
    `${account} again on GitHub before Fixwright can work there again.`
  );
}

/**
 * Locks the installation's row FOR SHARE and returns the error that explains why it cannot
 * act, or null when it is active or not recorded.
 *
 * Call it in the transaction that creates work for the installation, before that work is
 * written. The lock lasts until the transaction ends, and it conflicts with the UPDATE that a
 * `suspend` or `deleted` event makes (src/events/installation.ts). An event that updated the
 * row first makes this call wait for its commit and then return the error. An event that comes
 * second waits for the caller to commit, and its cancelInstallationWork then cancels the new
 * work. Outside a transaction the lock ends with the statement.
 */
export async function findInstallationUnavailable(
  db: Database | Transaction,
  installationId: number,
): Promise<InstallationUnavailableError | null> {
  const [row] = await db
    .select({
      accountLogin: installations.accountLogin,
      suspendedAt: installations.suspendedAt,
      deletedAt: installations.deletedAt,
    })
    .from(installations)
    .where(eq(installations.id, installationId))
    .for('share');
  if (!row) return null;
  if (row.deletedAt) {
    return new InstallationUnavailableError(installationId, 'uninstalled', row.accountLogin);
  }
  if (row.suspendedAt) {
    return new InstallationUnavailableError(installationId, 'suspended', row.accountLogin);
  }
  return null;
}

/** Raises InstallationUnavailableError when the database marks the installation so. */
export async function requireActiveInstallation(
  db: Database,
  installationId: number,
): Promise<void> {
  const unavailable = await findInstallationUnavailable(db, installationId);
  if (unavailable) throw unavailable;
}

/** Path of the request that mints an installation token, with the installation id. */
export const accessTokenPath = /\/app\/installations\/(\d+)\/access_tokens$/;

/**
 * Returns `error` as an InstallationUnavailableError when it is one, or when it is GitHub's
 * response to minting an installation token: 404 for an uninstalled app, 403 whose message
 * states that the installation is suspended. Returns null for every other error, including other
 * 403s (a secondary rate limit, say), which must not mark the installation suspended.
 */
export function asInstallationUnavailable(error: unknown): InstallationUnavailableError | null {
  if (error instanceof InstallationUnavailableError) return error;
  if (!(error instanceof Error)) return null;
  const { status, request } = error as { status?: unknown; request?: { url?: unknown } };
  const match = typeof request?.url === 'string' ? accessTokenPath.exec(request.url) : null;
  if (!match || (status !== 403 && status !== 404)) return null;
  if (status === 403 && !/suspended/i.test(error.message)) return null;
  const installationId = Number(match[1]);
  return new InstallationUnavailableError(
    installationId,
    status === 404 ? 'uninstalled' : 'suspended',
  );
}

/**
 * Marks the installation suspended or deleted, so queued work for it stops before calling
 * GitHub. A timestamp already set is kept. Returns the error again with the account's login
 * from the row, so its message names the account, or `error` itself when no row exists.
 */
export async function recordInstallationUnavailable(
  db: Database,
  error: InstallationUnavailableError,
): Promise<InstallationUnavailableError> {
  const now = new Date();
  const row = await db.query.installations.findFirst({
    where: eq(installations.id, error.installationId),
  });
  if (!row) return error;
  const change =
    error.reason === 'uninstalled'
      ? { deletedAt: row.deletedAt ?? now }
      : { suspendedAt: row.suspendedAt ?? now };
  await db.update(installations).set(change).where(eq(installations.id, error.installationId));
  return new InstallationUnavailableError(error.installationId, error.reason, row.accountLogin);
}
