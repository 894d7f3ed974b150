import { eq } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { userApiKeys, type Provider } from '../db/schema/index.ts';

/** Returns the providers for which the user has stored an own key. */
export async function storedKeyProviders(db: Database, userId: string): Promise<Set<Provider>> {
  const rows = await db
    .select({ provider: userApiKeys.provider })
    .from(userApiKeys)
    .where(eq(userApiKeys.userId, userId));
  return new Set(rows.map((row) => row.provider));
}
