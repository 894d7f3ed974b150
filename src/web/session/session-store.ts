import { createHash, randomBytes } from 'node:crypto';
import { and, eq, gt, lt } from 'drizzle-orm';
import type { Database } from '../../db/client.ts';
import { oauthStates, sessions, users, type Plan } from '../../db/schema/index.ts';

export interface SessionUser {
  id: string;
  login: string;
  name: string | null;
  role: 'user' | 'admin';
  plan: Plan;
  /** Tokens per period stored for the user, or -1 for unlimited. */
  tokenLimit: number;
}

/** A live session with its user, as loaded for each request. */
export interface ActiveSession {
  /** Row id, safe to log. */
  id: string;
  csrfToken: string;
  expiresAt: Date;
  user: SessionUser;
}

export function hashSecret(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Starts a session for the user and returns the token for the cookie; only its hash is stored. */
export async function createSession(
  db: Database,
  userId: string,
  ttlHours: number,
): Promise<{ id: string; token: string; csrfToken: string; expiresAt: Date }> {
  const token = randomToken();
  const csrfToken = randomToken();
  const expiresAt = new Date(Date.now() + ttlHours * 3_600_000);
  const [row] = await db
    .insert(sessions)
    .values({ tokenHash: hashSecret(token), userId, csrfToken, expiresAt })
    .returning({ id: sessions.id });
  return { id: row!.id, token, csrfToken, expiresAt };
}

/** Returns the unexpired session for a cookie token, or null. */
export async function findSession(db: Database, token: string): Promise<ActiveSession | null> {
  const [row] = await db
    .select({
      id: sessions.id,
      csrfToken: sessions.csrfToken,
      expiresAt: sessions.expiresAt,
      user: { id: users.id, login: users.login, name: users.name, role: users.role, plan: users.plan, tokenLimit: users.tokenLimit },
    })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(and(eq(sessions.tokenHash, hashSecret(token)), gt(sessions.expiresAt, new Date())))
    .limit(1);
  return row ?? null;
}

/** Deletes the session of a cookie token; returns its row id, or null when there was none. */
export async function deleteSession(db: Database, token: string): Promise<string | null> {
  const [row] = await db
    .delete(sessions)
    .where(eq(sessions.tokenHash, hashSecret(token)))
    .returning({ id: sessions.id });
  return row?.id ?? null;
}

/** Deletes expired sessions and sign-in states; returns how many rows went. */
export async function deleteExpiredSessions(db: Database): Promise<number> {
  const now = new Date();
  const expiredSessions = await db.delete(sessions).where(lt(sessions.expiresAt, now)).returning({ id: sessions.id });
  const states = await db
    .delete(oauthStates)
    .where(lt(oauthStates.expiresAt, now))
    .returning({ stateHash: oauthStates.stateHash });
  return expiredSessions.length + states.length;
}

export const oauthStateTtlMs = 10 * 60_000;

/** Stores a new OAuth state for ten minutes and returns it. */
export async function createOAuthState(db: Database, returnTo: string): Promise<string> {
  const state = randomToken();
  await db.insert(oauthStates).values({
    stateHash: hashSecret(state),
    returnTo,
    expiresAt: new Date(Date.now() + oauthStateTtlMs),
  });
  return state;
}

/** Deletes an unexpired state and returns where to go after sign-in, or null when unknown. */
export async function consumeOAuthState(db: Database, state: string): Promise<string | null> {
  const [row] = await db
    .delete(oauthStates)
    .where(and(eq(oauthStates.stateHash, hashSecret(state)), gt(oauthStates.expiresAt, new Date())))
    .returning({ returnTo: oauthStates.returnTo });
  return row?.returnTo ?? null;
}
