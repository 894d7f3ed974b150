import { createHash, randomBytes } from 'node:crypto';
import { and, desc, eq, isNull, lt, or, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { apiTokens, users } from '../db/schema/index.ts';

/** Prefix that marks Fixwright personal access tokens, so secret scanners can spot them. */
export const tokenPrefix = 'fxw_';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Maximum length of a personal access token name, in UTF-16 code units after trimming spaces. */
export const maxTokenNameLength = 100;

/** Live personal access tokens one user may have at once. */
export const maxLiveTokensPerUser = 100;

/** Error for a token that would take a user past `maxLiveTokensPerUser`. */
export class TokenLimitError extends Error {
  override name = 'TokenLimitError';
}

/**
 * Creates a token for the user and returns it; only its hash is stored. Raises TokenLimitError
 * when the user already has `maxLiveTokensPerUser` live tokens. The count and the insert run
 * under the user's row lock, so tokens created at once cannot pass the limit either.
 */
export async function mintApiToken(
  db: Database,
  userId: string,
  name: string,
): Promise<{ id: string; token: string }> {
  const token = tokenPrefix + randomBytes(32).toString('base64url');
  const id = await db.transaction(async (tx) => {
    const [owner] = await tx
      .select({ login: users.login })
      .from(users)
      .where(eq(users.id, userId))
      .for('update');
    const [live] = await tx
      .select({ count: sql<number>`count(*)::int` })
      .from(apiTokens)
      .where(and(eq(apiTokens.userId, userId), isNull(apiTokens.revokedAt)));
    if ((live?.count ?? 0) >= maxLiveTokensPerUser) {
      throw new TokenLimitError(
        `${owner?.login ?? 'This user'} already has ${maxLiveTokensPerUser} live personal access ` +
          'tokens, the maximum; revoke one on the tokens page of the dashboard, then create the new one.',
      );
    }
    const [row] = await tx
      .insert(apiTokens)
      .values({ userId, name, tokenHash: hashToken(token), lastFour: token.slice(-4) })
      .returning({ id: apiTokens.id });
    return row!.id;
  });
  return { id, token };
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
