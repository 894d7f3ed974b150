import { users, type Plan } from '../../src/db/schema/index.ts';
import type { Database } from '../../src/db/client.ts';
import { createSession } from '../../src/web/session/session-store.ts';

export interface SignedInUser {
  userId: string;
  login: string;
  /** Value for the Cookie header. */
  cookie: string;
  csrfToken: string;
}

/** Creates a user with a live session, as a finished GitHub sign-in would. */
export async function createSignedInUser(
  db: Database,
  input: { login: string; role?: 'user' | 'admin'; plan?: Plan; tokenLimit?: number; tokensUsed?: number },
): Promise<SignedInUser> {
  const [user] = await db
    .insert(users)
    .values({
      login: input.login,
      role: input.role ?? 'user',
      plan: input.plan ?? 'free',
      tokenLimit: input.tokenLimit ?? 1000,
      tokensUsed: input.tokensUsed ?? 0,
    })
    .returning({ id: users.id });
  const session = await createSession(db, user!.id, 1);
  return {
    userId: user!.id,
    login: input.login,
    cookie: `fixwright_session=${session.token}`,
    csrfToken: session.csrfToken,
  };
}

/** Encodes fields as a form body, repeating a key for each value of an array. */
export function formBody(fields: Record<string, string | string[]>): string {
  const body = new URLSearchParams();
  for (const [key, value] of Object.entries(fields)) {
    for (const item of Array.isArray(value) ? value : [value]) body.append(key, item);
  }
  return body.toString();
}

/** Headers of a browser form post with the user's cookie. */
export function formHeaders(user: SignedInUser, extra: Record<string, string> = {}) {
  return { cookie: user.cookie, 'content-type': 'application/x-www-form-urlencoded', ...extra };
}
