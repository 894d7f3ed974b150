import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import { users } from '../db/schema/index.ts';

export interface GitHubAccount {
  id: number;
  login: string;
  name?: string | null;
}

/**
 * Finds or creates the user for a GitHub account. A user first created from the command line
 * by login alone is linked to the account on first sight of its GitHub id.
 */
export async function upsertGitHubUser(
  db: Database | Transaction,
  account: GitHubAccount,
  freeTokenLimit: number,
): Promise<string> {
  const byId = await db.query.users.findFirst({ where: eq(users.githubId, account.id) });
  if (byId) {
    if (byId.login !== account.login) {
      await db.update(users).set({ login: account.login }).where(eq(users.id, byId.id));
    }
    return byId.id;
  }

  const [linked] = await db
    .update(users)
    .set({ githubId: account.id })
    .where(and(sql`lower(${users.login}) = lower(${account.login})`, isNull(users.githubId)))
    .returning({ id: users.id });
  if (linked) return linked.id;

  const [created] = await db
    .insert(users)
    .values({
      githubId: account.id,
      login: account.login,
      name: account.name ?? null,
      tokenLimit: freeTokenLimit,
    })
    .onConflictDoUpdate({ target: users.githubId, set: { login: account.login } })
    .returning({ id: users.id });
  return created!.id;
}
