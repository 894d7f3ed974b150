import { eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { users } from '../db/schema/index.ts';

/**
 * Builds the line that `users reset-admin` prints once resetAdminLogin returned `githubId`
 * (null when none was recorded) for `login`. The line names the role that syncAdminRole gives
 * the next sign-in with the login under `adminLogins`, the ADMIN_LOGINS of the command.
 */
export async function describeResetAdmin(
  db: Database,
  login: string,
  githubId: number | null,
  adminLogins: readonly string[],
): Promise<string> {
  if (adminLogins.length === 0) return describeWithoutAdminLogins(db, login, githubId);
  if (githubId === null && !adminLogins.includes(login.toLowerCase())) {
    return (
      `No GitHub id is recorded for ${login}, and ADMIN_LOGINS does not list it, so a sign-in ` +
      'with it gets the user role. To make it an admin, add it to ADMIN_LOGINS and restart.'
    );
  }
  if (githubId === null) {
    return `No GitHub id is recorded for ${login}, so the next sign-in with it records one.`;
  }
  return (
    `Deleted GitHub id ${githubId} recorded for ${login}. While ${login} is in ADMIN_LOGINS, ` +
    'the next sign-in with it records its GitHub id and gets the admin role.'
  );
}

/**
 * Without ADMIN_LOGINS a sign-in keeps the user's role, unless no user is admin, and then the
 * account that signs in becomes admin. So the line depends on the roles stored now.
 */
async function describeWithoutAdminLogins(db: Database, login: string, githubId: number | null): Promise<string> {
  const deletion =
    githubId === null
      ? `No GitHub id is recorded for ${login}, so nothing was deleted.`
      : `Deleted GitHub id ${githubId} recorded for ${login}.`;
  const unset = "ADMIN_LOGINS is unset in this command's environment, and without it";
  const [user] = await db
    .select({ role: users.role })
    .from(users)
    .where(sql`lower(${users.login}) = lower(${login})`);
  if (user?.role === 'admin') {
    return (
      `${deletion} ${unset} a sign-in keeps the user's role. ${login} is admin and stays admin ` +
      'when it signs in again.'
    );
  }
  const [admin] = await db.select({ id: users.id }).from(users).where(eq(users.role, 'admin')).limit(1);
  if (!admin) {
    return (
      `${deletion} ${unset} the first GitHub account to sign in while no user is admin becomes ` +
      'admin. No user is admin now, so the next sign-in makes its account admin, whatever its login.'
    );
  }
  return (
    `${deletion} ${unset} a sign-in keeps the user's role while another user is admin, so a ` +
    `sign-in with ${login} gets the user role. To make it an admin, add it to ADMIN_LOGINS with ` +
    'the logins of the other admins, and restart.'
  );
}
