import { z } from 'zod';
import { eq } from 'drizzle-orm';
import type { Transaction } from '../db/client.ts';
import { installations } from '../db/schema/index.ts';
import { upsertGitHubUser } from '../users/upsert-github-user.ts';

export const installationPayload = z.object({
  action: z.string(),
  installation: z.object({
    id: z.number().int(),
    account: z
      .object({ id: z.number().int(), login: z.string(), type: z.string().optional() })
      .nullable(),
  }),
  sender: z.object({ id: z.number().int(), login: z.string(), name: z.string().nullish() }),
});
export type InstallationPayload = z.infer<typeof installationPayload>;

/** Records who installed the app where; that user's allowance pays for automatic work. */
export async function handleInstallationEvent(
  tx: Transaction,
  payload: InstallationPayload,
  freeTokenLimit: number,
): Promise<string> {
  const { installation, sender } = payload;
  const account = installation.account ?? { id: 0, login: 'unknown', type: 'User' };
  switch (payload.action) {
    case 'created': {
      const userId = await upsertGitHubUser(tx, sender, freeTokenLimit);
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
    case 'deleted':
      await tx
        .update(installations)
        .set({ deletedAt: new Date() })
        .where(eq(installations.id, installation.id));
      return `installation ${installation.id} marked deleted`;
    case 'suspend':
      await tx
        .update(installations)
        .set({ suspendedAt: new Date() })
        .where(eq(installations.id, installation.id));
      return `installation ${installation.id} marked suspended`;
    case 'unsuspend':
      await tx
        .update(installations)
        .set({ suspendedAt: null })
        .where(eq(installations.id, installation.id));
      return `installation ${installation.id} resumed`;
    default:
      return `ignored: installation action ${payload.action}`;
  }
}
