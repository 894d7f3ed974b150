import { sql } from 'drizzle-orm';
import type { Database } from '../../src/db/client.ts';
import { platformKeyRejections } from '../../src/db/schema/index.ts';
import { hashPlatformKey } from '../../src/keys/platform-key-rejections.ts';

/**
 * Records a 401 rejection of the platform Groq key `key`, whose re-check is `due` or an hour
 * away.
 */
export async function recordGroqKeyRejection(db: Database, key: string, due = false): Promise<void> {
  await db.insert(platformKeyRejections).values({
    provider: 'groq',
    keyHash: hashPlatformKey(key),
    status: 401,
    recheckAt: due ? sql`now() - interval '1 second'` : sql`now() + interval '1 hour'`,
  });
}
