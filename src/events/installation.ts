import { z } from 'zod';
import { and, eq, isNull, or, sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Transaction } from '../db/client.ts';
import { installations, users } from '../db/schema/index.ts';
import type { GitHubApp } from '../github/app.ts';
import type { PgBoss } from '../jobs/boss.ts';
import { queueInstallationConfirmation } from '../jobs/confirm-installation.ts';
import { queueInstallationResume } from '../jobs/resume-installation-queue.ts';
import type { Logger } from '../logger.ts';
import {
  stopInstallationWork,
  type InstallationCancelCause,
} from '../runs/cancel-installation-work.ts';
import { upsertGitHubUser } from '../users/upsert-github-user.ts';
import { githubId } from './github-id.ts';
import { githubLogin } from './github-names.ts';
import { ignoredActionOutcome } from './outcome-values.ts';

export const installationPayload = z.object({
  action: z.string(),
  installation: z.object({
    id: githubId,
    account: z
      .object({ id: githubId, login: githubLogin, type: z.string().optional() })
      .nullable(),
    /** The user who suspended the installation, null or missing for other actions. */
    suspended_by: z.object({ login: githubLogin }).nullish(),
  }),
  sender: z.object({ id: githubId, login: githubLogin, name: z.string().nullish() }),
});
export type InstallationPayload = z.infer<typeof installationPayload>;

/** Settings, logger and GitHub App client of the installation handler. */
interface HandlerContext {
  config: Pick<Config, 'PLAN_FREE_TOKENS' | 'BILLING_PERIOD'>;
  logger: Logger;
  github: GitHubApp | null;
}

/** Actions that set or clear the installation's suspension and deletion marks. */
const markingActions = new Set(['created', 'deleted', 'suspend', 'unsuspend']);

/**
 * Records who installed the app where, because that user's allowance pays for automatic
 * work, and when its permissions last changed. `suspend` and `deleted` also cancel the installation's unfinished runs, reports and
 * previews. `unsuspend` and a new `created` leave cancelled work cancelled, and a new push or
 * "Fix with AI" starts new work. `unsuspend` also queues one job that checks the installation's
 * open pull requests with GitHub (see handleResumeInstallationJob).
 *
 * GitHub does not deliver these events in order, and an `unsuspend` payload carries no time to
 * order it by. So each event that changes a mark also queues a check of the installation with
 * GitHub (src/jobs/confirm-installation.ts), which sets the marks to GitHub's state.
 */
export async function handleInstallationEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: InstallationPayload,
  context: HandlerContext,
): Promise<string> {
  const outcome = await applyInstallationEvent(tx, boss, payload, context);
  if (markingActions.has(payload.action) && !outcome.startsWith('ignored:')) {
    await queueConfirmation(tx, boss, payload, context);
  }
  return outcome;
}

/** Sets the marks that the event's action implies, cancels work, and returns the outcome. */
async function applyInstallationEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: InstallationPayload,
  context: HandlerContext,
): Promise<string> {
  const { installation } = payload;
  switch (payload.action) {
    case 'created':
      return recordInstallation(tx, payload, context);
    case 'deleted': {
      // A second delivery keeps the first timestamp.
      const [row] = await tx
        .update(installations)
        .set({ deletedAt: sql`coalesce(${installations.deletedAt}, now())` })
        .where(eq(installations.id, installation.id))
        .returning({ accountLogin: installations.accountLogin });
      if (!row) return notRecorded(installation.id);
      return stopInstallation(tx, boss, payload, row.accountLogin, 'uninstalled');
    }
    case 'suspend': {
      const [row] = await tx
        .update(installations)
        .set({ suspendedAt: sql`coalesce(${installations.suspendedAt}, now())` })
        .where(eq(installations.id, installation.id))
        .returning({ accountLogin: installations.accountLogin });
      if (!row) return notRecorded(installation.id);
      return stopInstallation(tx, boss, payload, row.accountLogin, 'suspended');
    }
    case 'unsuspend': {
      // Work cancelled by the suspension stays cancelled. GitHub blocks webhook events to a
      // suspended installation (REST API docs, "Suspend an app installation"), so a push or a
      // new pull request during the suspension reached Fixwright late or not at all. The job
      // queued here lists the open pull requests and queues a check of each, which analyzes a
      // head commit that has no run. One job keeps this transaction small however many pull
      // requests the installation has.
      // GitHub may have withheld a `new_permissions_accepted` event during the suspension.
      const [row] = await tx
        .update(installations)
        .set({ suspendedAt: null, permissionsChangedAt: sql`now()` })
        .where(eq(installations.id, installation.id))
        .returning({ id: installations.id });
      if (!row) return notRecorded(installation.id);
      const resumed = `installation ${installation.id} resumed`;
      // The job needs GitHub App credentials, and queueConfirmation logs their absence.
      if (!context.github) return resumed;
      const jobId = await queueInstallationResume(tx, boss, installation.id);
      return jobId === null
        ? `${resumed}; a check of its open pull requests with GitHub is queued already`
        : `${resumed}; queued a check of its open pull requests with GitHub`;
    }
    case 'new_permissions_accepted': {
      // Each process renews its cached access token once it reads the new time, so an apply
      // reads the permissions that the owner accepted (see GitHubApp.installationPermissions).
      const [row] = await tx
        .update(installations)
        .set({ permissionsChangedAt: sql`now()` })
        .where(eq(installations.id, installation.id))
        .returning({ id: installations.id });
      if (!row) return notRecorded(installation.id);
      return (
        `installation ${installation.id} accepted new permissions; its next apply of a ` +
        'workflow file reads them from a new access token'
      );
    }
    default:
      return ignoredActionOutcome('installation', payload.action);
  }
}

/**
 * Returns the outcome of a `suspend`, `unsuspend` or `deleted` event for an installation
 * without a row. Runs and patch requests need the row, so there is no work to cancel, and the
 * `ignored:` prefix keeps the event from queueing a check that would ask GitHub for nothing.
 */
function notRecorded(installationId: number): string {
  return `ignored: installation ${installationId} is not recorded, so it has no mark or work to change`;
}

/**
 * Queues the check of the installation with GitHub in the event's transaction. Without GitHub
 * App credentials it queues nothing and logs a warning that the marks stay as events left them.
 */
async function queueConfirmation(
  tx: Transaction,
  boss: PgBoss,
  payload: InstallationPayload,
  context: HandlerContext,
): Promise<void> {
  const installationId = payload.installation.id;
  if (!context.github) {
    context.logger.warn(
      { event: 'installation.unconfirmed', installationId, action: payload.action },
      'GitHub App credentials are not configured, so the installation keeps the marks of its ' +
        'events in the order they arrived, without a check with GitHub. Set APP_ID and ' +
        'PRIVATE_KEY (or PRIVATE_KEY_PATH) and restart.',
    );
    return;
  }
  await queueInstallationConfirmation(tx, boss, installationId);
}

/**
 * Stores the installation with the sender as its owner, and clears its deletion and
 * suspension marks. Installation ids are unique on GitHub, so a `created` event for a stored id
 * whose account id differs is forged or corrupt, and it changes nothing. GitHub gives an
 * installation a new id when the app is installed again, also by another admin of the same
 * organisation. So a `created` event whose sender is not the stored owner of the id is
 * replayed or forged, and it changes nothing either. An installation without an owner,
 * recorded from a `pull_request` event, takes the sender as its owner.
 */
async function recordInstallation(
  tx: Transaction,
  payload: InstallationPayload,
  context: HandlerContext,
): Promise<string> {
  const { installation, sender } = payload;
  const account = installation.account ?? { id: 0, login: 'unknown', type: 'User' };
  // Checked before the sender's user is created, so an ignored event stores no user either.
  const stored = await findStoredInstallation(tx, installation.id);
  const rejected = stored && rejectRecordedInstallation(context.logger, payload, stored);
  if (rejected) return rejected;

  const userId = await upsertGitHubUser(tx, sender, context.config);
  const values = {
    accountLogin: account.login,
    accountId: account.id,
    accountType: account.type ?? 'User',
    userId,
    suspendedAt: null,
    deletedAt: null,
  };
  // The condition covers a concurrent `created` that inserted the id after the check above.
  const [row] = await tx
    .insert(installations)
    .values({ id: installation.id, ...values })
    .onConflictDoUpdate({
      target: installations.id,
      set: values,
      setWhere: and(
        eq(installations.accountId, account.id),
        or(isNull(installations.userId), eq(installations.userId, userId)),
      ),
    })
    .returning({ id: installations.id });
  if (!row) {
    const raced = await findStoredInstallation(tx, installation.id);
    return rejectRecordedInstallation(context.logger, payload, raced!)!;
  }
  return `installation ${installation.id} recorded for ${sender.login}`;
}

/** Stored account and owner of an installation, read with a row lock. */
interface StoredInstallation {
  accountId: number;
  accountLogin: string;
  userId: string | null;
  ownerGithubId: number | null;
  ownerLogin: string | null;
}

async function findStoredInstallation(
  tx: Transaction,
  installationId: number,
): Promise<StoredInstallation | undefined> {
  const [row] = await tx
    .select({
      accountId: installations.accountId,
      accountLogin: installations.accountLogin,
      userId: installations.userId,
      ownerGithubId: users.githubId,
      ownerLogin: users.login,
    })
    .from(installations)
    .leftJoin(users, eq(users.id, installations.userId))
    .where(eq(installations.id, installationId))
    .for('update', { of: installations });
  return row;
}

/**
 * Logs a `created` event that would change the account or the owner of a stored installation
 * and returns its outcome, or returns null when the event may record the installation.
 */
function rejectRecordedInstallation(
  logger: Logger,
  payload: InstallationPayload,
  stored: StoredInstallation,
): string | null {
  const { installation, sender } = payload;
  const ids = { installationId: installation.id, senderId: sender.id, senderLogin: sender.login };
  if (stored.accountId !== (installation.account?.id ?? 0)) {
    logger.warn(
      {
        event: 'installation.account_mismatch',
        ...ids,
        storedAccountId: stored.accountId,
        storedAccountLogin: stored.accountLogin,
        payloadAccountId: installation.account?.id ?? null,
        payloadAccountLogin: installation.account?.login ?? null,
      },
      'installation.created names another account than the stored installation; owner left unchanged',
    );
    return (
      `ignored: installation ${installation.id} is already recorded for account ` +
      `${stored.accountLogin} (id ${stored.accountId})`
    );
  }
  if (stored.userId === null || isStoredOwner(stored, sender)) return null;

  logger.warn(
    {
      event: 'installation.owner_mismatch',
      ...ids,
      storedOwnerGithubId: stored.ownerGithubId,
      storedOwnerLogin: stored.ownerLogin,
    },
    'installation.created names another sender than the stored owner; GitHub gives a new ' +
      'installation a new id, so the event is replayed or forged and the owner is left unchanged',
  );
  return (
    `ignored: installation ${installation.id} is already owned by ${stored.ownerLogin} ` +
    `(GitHub id ${stored.ownerGithubId ?? 'unknown'}), and GitHub gives an installation of the ` +
    `app a new id, so a created event from ${sender.login} cannot take it over`
  );
}

/**
 * Returns whether `sender` is the stored owner. An owner created from the command line by
 * login alone has no GitHub id yet, so its login is compared without case, as
 * upsertGitHubUser links it.
 */
function isStoredOwner(stored: StoredInstallation, sender: InstallationPayload['sender']): boolean {
  if (stored.ownerGithubId !== null) return stored.ownerGithubId === sender.id;
  return stored.ownerLogin?.toLowerCase() === sender.login.toLowerCase();
}

/** Cancels the installation's unfinished work and returns the delivery's outcome. */
async function stopInstallation(
  tx: Transaction,
  boss: PgBoss,
  payload: InstallationPayload,
  storedAccountLogin: string | undefined,
  cause: InstallationCancelCause,
): Promise<string> {
  const { id } = payload.installation;
  const cancelled = await stopInstallationWork(tx, boss, {
    id,
    // The payload's login is current after an account rename. The stored login covers a
    // payload whose account is null.
    accountLogin: payload.installation.account?.login ?? storedAccountLogin ?? 'its account',
    actorLogin: payload.installation.suspended_by?.login ?? payload.sender.login,
    cause,
  });
  const marked = cause === 'suspended' ? 'suspended' : 'deleted';
  return `installation ${id} marked ${marked}; ${cancelled}`;
}
