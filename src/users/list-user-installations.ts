import { and, asc, eq, isNull } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { installations } from '../db/schema/index.ts';

/** Lists the installations the user owns that are not deleted, by account login. */
export async function listUserInstallations(db: Database, userId: string) {
  return db
    .select({
      id: installations.id,
      accountLogin: installations.accountLogin,
      accountType: installations.accountType,
      suspendedAt: installations.suspendedAt,
      createdAt: installations.createdAt,
    })
    .from(installations)
    .where(and(eq(installations.userId, userId), isNull(installations.deletedAt)))
    .orderBy(asc(installations.accountLogin));
}
