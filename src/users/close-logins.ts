import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { users } from '../db/schema/index.ts';
import { closestNames } from '../text/closest-name.ts';

/** Maximum number of logins suggested for an unknown login. */
const maxSuggestions = 3;

/**
 * Returns the stored logins closest to `login` by edit distance, without regard to case, for a
 * "Did you mean" hint, or an empty array when none is close. Only logins whose length is within
 * the suggestion distance are read, so a large users table is not read whole.
 */
export async function findCloseLogins(db: Database, login: string): Promise<string[]> {
  // maxSuggestionDistance grows with the longer name, so a third of the longest login that can
  // still be close bounds the length difference: d <= (n + d) / 3 gives d <= n / 2.
  const maxDifference = Math.max(1, Math.floor(login.length / 2));
  const rows = await db
    .select({ login: users.login })
    .from(users)
    .where(sql`abs(length(${users.login}) - ${login.length}) <= ${maxDifference}`)
    .orderBy(users.login);
  return closestNames(
    login,
    rows.map((row) => row.login),
    maxSuggestions,
  );
}
