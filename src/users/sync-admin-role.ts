import { eq, sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { adminLogins } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';

/**
 * Sets the user's role at sign-in. With ADMIN_LOGINS set, a listed login is admin only with
 * the GitHub id recorded at its first sign-in (see `admin_logins`). Without it, the first
 * user to sign in while no admin exists becomes one. Both follow the GitHub id, because the
 * user row of a sign-in is found by GitHub id, not by login.
 */
export async function syncAdminRole(
  context: { db: Database; config: Config; logger: Logger },
  user: { id: string; login: string; githubId: number },
): Promise<'user' | 'admin'> {
  const { db, config } = context;
  if (config.ADMIN_LOGINS.length > 0) {
    const role = (await isBoundAdminLogin(context, user)) ? 'admin' : 'user';
    await db.execute(sql`UPDATE users SET role = ${role}, updated_at = now() WHERE id = ${user.id} AND role <> ${role}`);
    return role;
  }
  return db.transaction(async (tx) => {
    // Serializes concurrent first sign-ins, so only one of them finds no admin.
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('fixwright.first_admin'))`);
    const rows = await tx.execute<{ role: 'user' | 'admin' }>(sql`
      UPDATE users SET role = 'admin', updated_at = now()
      WHERE id = ${user.id} AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin')
      RETURNING role
    `);
    if (rows.length > 0) return 'admin';
    const current = await tx.execute<{ role: 'user' | 'admin' }>(
      sql`SELECT role FROM users WHERE id = ${user.id}`,
    );
    return current[0]?.role ?? 'user';
  });
}

/**
 * Checks whether the user's login is in ADMIN_LOGINS and recorded for the user's GitHub id.
 * The first sign-in with a listed login records its GitHub id. A later sign-in with that
 * login and another id gets false and a logged warning.
 */
async function isBoundAdminLogin(
  context: { db: Database; config: Config; logger: Logger },
  user: { login: string; githubId: number },
): Promise<boolean> {
  const { db, config, logger } = context;
  const login = user.login.toLowerCase();
  if (!config.ADMIN_LOGINS.includes(login)) return false;

  await db.insert(adminLogins).values({ login, githubId: user.githubId }).onConflictDoNothing();
  const [binding] = await db
    .select({ githubId: adminLogins.githubId })
    .from(adminLogins)
    .where(eq(adminLogins.login, login));
  if (binding!.githubId === user.githubId) return true;

  logger.warn(
    {
      event: 'auth.admin_login_reused',
      login: user.login,
      recordedGithubId: binding!.githubId,
      githubId: user.githubId,
    },
    `ADMIN_LOGINS lists ${login}, but its recorded GitHub id is ${binding!.githubId}, not ` +
      `${user.githubId}, so this sign-in gets the user role. "Admins" in the README says how to grant it.`,
  );
  return false;
}

/**
 * Applies ADMIN_LOGINS to every user at start, so a login removed from the list loses admin
 * rights on its open sessions too, not only at its next sign-in. A user is admin when their
 * login is listed and bound to their GitHub id. The GitHub ids of logins no longer listed are
 * deleted, so a login listed again records the account of its next sign-in. Does nothing when
 * ADMIN_LOGINS is unset.
 */
export async function applyAdminLogins(db: Database, config: Config): Promise<number> {
  if (config.ADMIN_LOGINS.length === 0) return 0;
  const admins = sql.join(
    config.ADMIN_LOGINS.map((login) => sql`${login}`),
    sql`, `,
  );
  return db.transaction(async (tx) => {
    await tx.execute(sql`DELETE FROM admin_logins WHERE login NOT IN (${admins})`);
    const isAdmin = sql`EXISTS (
      SELECT 1 FROM admin_logins a
      WHERE a.login = lower(u.login) AND a.github_id = u.github_id AND a.login IN (${admins})
    )`;
    const rows = await tx.execute(sql`
      UPDATE users u SET
        role = CASE WHEN ${isAdmin} THEN 'admin' ELSE 'user' END,
        updated_at = now()
      WHERE role <> CASE WHEN ${isAdmin} THEN 'admin' ELSE 'user' END
      RETURNING id
    `);
    return rows.length;
  });
}

/**
 * Deletes the GitHub id recorded for an ADMIN_LOGINS login, so that the next sign-in with the
 * login records its account. The account that had it loses the admin role at once, unless its
 * GitHub id is also recorded for its current login. Returns the deleted GitHub id, or null
 * when none was recorded.
 */
export async function resetAdminLogin(db: Database, login: string): Promise<number | null> {
  return db.transaction(async (tx) => {
    const [deleted] = await tx
      .delete(adminLogins)
      .where(eq(adminLogins.login, login.toLowerCase()))
      .returning({ githubId: adminLogins.githubId });
    if (!deleted) return null;
    await tx.execute(sql`
      UPDATE users u SET role = 'user', updated_at = now()
      WHERE u.github_id = ${deleted.githubId} AND u.role = 'admin' AND NOT EXISTS (
        SELECT 1 FROM admin_logins a WHERE a.login = lower(u.login) AND a.github_id = u.github_id
      )
    `);
    return deleted.githubId;
  });
}
