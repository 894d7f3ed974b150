import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database, Transaction } from '../db/client.ts';
import { users } from '../db/schema/index.ts';
import { periodColumns } from '../usage/period.ts';

export interface GitHubAccount {
  id: number;
  login: string;
  name?: string | null;
}

/**
 * Finds or creates the user for a GitHub account; the GitHub id is the identity, the login a
 * name that can change. A user first created from the command line by login alone is linked
 * to the account on first sight of its GitHub id. When GitHub has given the login to another
 * account since, the older holder's login is renamed to `LOGIN~GITHUB_ID`.
 */
export async function upsertGitHubUser(
  db: Database | Transaction,
  account: GitHubAccount,
  config: Pick<Config, 'PLAN_FREE_TOKENS' | 'BILLING_PERIOD'>,
): Promise<string> {
  const byId = await db.query.users.findFirst({ where: eq(users.githubId, account.id) });
  if (byId) {
    if (byId.login !== account.login) {
      await releaseLogin(db, account);
      await db.update(users).set({ login: account.login }).where(eq(users.id, byId.id));
    }
    return byId.id;
  }

  // A role follows the GitHub id, so a user linked by login starts as a plain user, also when
  // a login-only ADMIN_LOGINS match of an earlier version made it admin.
  const [linked] = await db
    .update(users)
    .set({ githubId: account.id, role: 'user' })
    .where(and(sql`lower(${users.login}) = lower(${account.login})`, isNull(users.githubId)))
    .returning({ id: users.id });
  if (linked) return linked.id;

  await releaseLogin(db, account);
  const now = new Date();
  const [created] = await db
    .insert(users)
    .values({
      githubId: account.id,
      login: account.login,
      name: account.name ?? null,
      tokenLimit: config.PLAN_FREE_TOKENS,
      ...periodColumns(now, now, config.BILLING_PERIOD),
    })
    .onConflictDoUpdate({ target: users.githubId, set: { login: account.login } })
    .returning({ id: users.id });
  return created!.id;
}

/** Renames any other account's user that still has `account.login`, compared without case. */
async function releaseLogin(db: Database | Transaction, account: GitHubAccount): Promise<void> {
  await db
    .update(users)
    .set({ login: sql`${users.login} || '~' || coalesce(${users.githubId}::text, ${users.id}::text)` })
    .where(
      and(
        sql`lower(${users.login}) = lower(${account.login})`,
        sql`${users.githubId} IS DISTINCT FROM ${account.id}`,
      ),
    );
}
