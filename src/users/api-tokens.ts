import { createHash, randomBytes } from 'node:crypto';
import { and, desc, eq, isNull, lt, or, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { apiTokens, users } from '../db/schema/index.ts';

/** Prefix that marks Fixwright personal access tokens, so secret scanners can spot them. */
export const tokenPrefix = 'fxw_';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Creates a token for the user and returns it; only its hash is stored. */
export async function mintApiToken(
  db: Database,
  userId: string,
  name: string,
): Promise<{ id: string; token: string }> {
  const token = tokenPrefix + randomBytes(32).toString('base64url');
  const [row] = await db
    .insert(apiTokens)
    .values({ userId, name, tokenHash: hashToken(token), lastFour: token.slice(-4) })
    .returning({ id: apiTokens.id });
  return { id: row!.id, token };
}

export interface TokenOwner {
  id: string;
  login: string;
  role: 'user' | 'admin';
}

/** Returns the owner of a live token, or null for an unknown or revoked one. */
export async function findTokenOwner(db: Database, token: string): Promise<TokenOwner | null> {
  const [row] = await db
    .select({ tokenId: apiTokens.id, id: users.id, login: users.login, role: users.role })
    .from(apiTokens)
    .innerJoin(users, eq(users.id, apiTokens.userId))
    .where(and(eq(apiTokens.tokenHash, hashToken(token)), isNull(apiTokens.revokedAt)))
    .limit(1);
  if (!row) return null;

  // At most one write a minute per token keeps the hot path read-only.
  await db
    .update(apiTokens)
    .set({ lastUsedAt: new Date() })
    .where(
      and(
        eq(apiTokens.id, row.tokenId),
        or(isNull(apiTokens.lastUsedAt), lt(apiTokens.lastUsedAt, sql`now() - interval '1 minute'`)),
      ),
    );
  return { id: row.id, login: row.login, role: row.role };
}

/** Lists the user's live tokens, newest first; never the token itself. */
export async function listApiTokens(db: Database, userId: string) {
  return db
    .select({
      id: apiTokens.id,
      name: apiTokens.name,
      lastFour: apiTokens.lastFour,
      createdAt: apiTokens.createdAt,
      lastUsedAt: apiTokens.lastUsedAt,
    })
    .from(apiTokens)
    .where(and(eq(apiTokens.userId, userId), isNull(apiTokens.revokedAt)))
    .orderBy(desc(apiTokens.createdAt));
}

/** Revokes one of the user's live tokens; returns false when the user has no such token. */
export async function revokeApiToken(
  db: Database,
  input: { userId: string; tokenId: string },
): Promise<boolean> {
  const rows = await db
    .update(apiTokens)
    .set({ revokedAt: new Date() })
    .where(
      and(
        eq(apiTokens.id, input.tokenId),
        eq(apiTokens.userId, input.userId),
        isNull(apiTokens.revokedAt),
      ),
    )
    .returning({ id: apiTokens.id });
  return rows.length > 0;
}
