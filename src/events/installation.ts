import { z } from 'zod';
import { eq, sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Transaction } from '../db/client.ts';
import { installations } from '../db/schema/index.ts';
import type { PgBoss } from '../jobs/boss.ts';
import {
  cancelInstallationWork,
  describeInstallationCancel,
  type InstallationCancelCause,
} from '../runs/cancel-installation-work.ts';
import { upsertGitHubUser } from '../users/upsert-github-user.ts';

export const installationPayload = z.object({
  action: z.string(),
  installation: z.object({
    id: z.number().int().positive(),
    account: z
      .object({ id: z.number().int(), login: z.string(), type: z.string().optional() })
      .nullable(),
    /** The user who suspended the installation, null or missing for other actions. */
    suspended_by: z.object({ login: z.string() }).nullish(),
  }),
  sender: z.object({ id: z.number().int(), login: z.string(), name: z.string().nullish() }),
});
export type InstallationPayload = z.infer<typeof installationPayload>;

/**
 * Records who installed the app where, because that user's allowance pays for automatic
 * work. `suspend` and `deleted` also cancel the installation's unfinished runs, reports and
 * previews. `unsuspend` and a new `created` leave cancelled work cancelled, and a new push or
 * "Fix with AI" starts new work.
 */
export async function handleInstallationEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: InstallationPayload,
  config: Pick<Config, 'PLAN_FREE_TOKENS' | 'BILLING_PERIOD'>,
): Promise<string> {
  const { installation, sender } = payload;
  const account = installation.account ?? { id: 0, login: 'unknown', type: 'User' };
  switch (payload.action) {
    case 'created': {
      const userId = await upsertGitHubUser(tx, sender, config);
      const values = {
        accountLogin: account.login,
        accountId: account.id,
        accountType: account.type ?? 'User',
        userId,
        suspendedAt: null,
        deletedAt: null,
      };
      await tx
        .insert(installations)
        .values({ id: installation.id, ...values })
        .onConflictDoUpdate({ target: installations.id, set: values });
      return `installation ${installation.id} recorded for ${sender.login}`;
    }
    case 'deleted': {
      // A second delivery keeps the first timestamp.
      const [row] = await tx
        .update(installations)
        .set({ deletedAt: sql`coalesce(${installations.deletedAt}, now())` })
        .where(eq(installations.id, installation.id))
        .returning({ accountLogin: installations.accountLogin });
      return stopInstallation(tx, boss, payload, row?.accountLogin, 'uninstalled');
    }
    case 'suspend': {
      const [row] = await tx
        .update(installations)
        .set({ suspendedAt: sql`coalesce(${installations.suspendedAt}, now())` })
        .where(eq(installations.id, installation.id))
        .returning({ accountLogin: installations.accountLogin });
      return stopInstallation(tx, boss, payload, row?.accountLogin, 'suspended');
    }
    case 'unsuspend':
      // Work cancelled by the suspension stays cancelled. GitHub blocks webhook events to a
      // suspended installation (REST API docs, "Suspend an app installation"), so the next
      // push or "Fix with AI" after this event starts new work.
      await tx
        .update(installations)
        .set({ suspendedAt: null })
        .where(eq(installations.id, installation.id));
      return `installation ${installation.id} resumed`;
    default:
      return `ignored: installation action ${payload.action}`;
  }
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
  const reason = describeInstallationCancel({
    id,
    // The payload's login is current after an account rename. The stored login covers a
    // payload whose account is null.
    accountLogin: payload.installation.account?.login ?? storedAccountLogin ?? 'its account',
    actorLogin: payload.installation.suspended_by?.login ?? payload.sender.login,
    cause,
  });
  const cancelled = await cancelInstallationWork(tx, boss, id, reason);
  const marked = cause === 'suspended' ? 'suspended' : 'deleted';
  return (
    `installation ${id} marked ${marked}; cancelled ${cancelled.runs} run(s), ` +
    `${cancelled.reports} report(s) and ${cancelled.patchRequests} patch request(s)`
  );
}
