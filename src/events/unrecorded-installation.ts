import type { Transaction } from '../db/client.ts';
import { installations } from '../db/schema/index.ts';
import type { PgBoss } from '../jobs/boss.ts';
import { queueInstallationConfirmation } from '../jobs/confirm-installation.ts';
import type { PullRequestPayload } from './pull-request.ts';
import type { ConfirmContext } from './pull-request-ties.ts';

/**
 * Records the installation that a pull_request event names when no row has it, with the
 * repository owner as its account and no owner. The app may have been installed before this
 * database existed, or the `installation.created` event may arrive after this one, and a run
 * needs its installation's row. Returns true when this call created the row.
 */
export async function recordEventInstallation(
  tx: Transaction,
  installationId: number,
  owner: PullRequestPayload['repository']['owner'],
): Promise<boolean> {
  const created = await tx
    .insert(installations)
    .values({
      id: installationId,
      accountLogin: owner.login,
      accountId: owner.id,
      accountType: owner.type ?? 'User',
    })
    .onConflictDoNothing()
    .returning({ id: installations.id });
  return created.length > 0;
}

/**
 * Queues the check with GitHub that an `installation.created` event queues, for an installation
 * that recordEventInstallation created. The check reads GET /app/installations/{id}, so an id
 * that GitHub does not know for this app is marked uninstalled and its work is cancelled. That
 * response does not name who installed the app, so the row gets its owner only from an
 * `installation.created` event. Returns the sentence for the event's outcome.
 */
export async function queueUnrecordedInstallationCheck(
  tx: Transaction,
  boss: PgBoss,
  installationId: number,
  context: ConfirmContext | undefined,
): Promise<string> {
  const recorded =
    `installation ${installationId} was not recorded, so it was recorded from this event without ` +
    'the user who installed the app, and its runs are listed for no one until an ' +
    'installation.created event names that user';
  if (!context?.github) {
    context?.logger.warn(
      { event: 'installation.unconfirmed', installationId, action: 'recorded_from_pull_request' },
      'GitHub App credentials are not configured, so the installation that a pull_request event ' +
        'named is not checked with GitHub. Set APP_ID and PRIVATE_KEY (or PRIVATE_KEY_PATH) and restart.',
    );
    return `${recorded}; GitHub App credentials are not configured, so it is not checked with GitHub`;
  }
  const jobId = await queueInstallationConfirmation(tx, boss, installationId);
  return jobId === null
    ? `${recorded}; a check of it with GitHub is queued already`
    : `${recorded}; queued a check of it with GitHub`;
}
