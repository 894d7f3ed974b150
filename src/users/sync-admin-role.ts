import { sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';

/**
 * Sets the user's role at sign-in. With ADMIN_LOGINS set, exactly the listed logins are
 * admins. Without it, the first user to sign in while no admin exists becomes one.
 */
export async function syncAdminRole(
  db: Database,
  config: Config,
  user: { id: string; login: string },
): Promise<'user' | 'admin'> {
  if (config.ADMIN_LOGINS.length > 0) {
    const role = config.ADMIN_LOGINS.includes(user.login.toLowerCase()) ? 'admin' : 'user';
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
 * Applies ADMIN_LOGINS to every user at start, so a login removed from the list loses admin
 * rights on its open sessions too, not only at its next sign-in. Does nothing when unset.
 */
export async function applyAdminLogins(db: Database, config: Config): Promise<number> {
  if (config.ADMIN_LOGINS.length === 0) return 0;
  const admins = sql.join(
    config.ADMIN_LOGINS.map((login) => sql`${login}`),
    sql`, `,
  );
  const rows = await db.execute(sql`
    UPDATE users SET
      role = CASE WHEN lower(login) IN (${admins}) THEN 'admin' ELSE 'user' END,
      updated_at = now()
    WHERE role <> CASE WHEN lower(login) IN (${admins}) THEN 'admin' ELSE 'user' END
    RETURNING id
  `);
  return rows.length;
}
