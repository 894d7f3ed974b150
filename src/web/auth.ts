import { createMiddleware } from 'hono/factory';
import type { AppContext } from '../context.ts';
import { findTokenOwner, type TokenOwner } from '../users/api-tokens.ts';
import { AppError } from './errors.ts';

export type AuthVariables = { user: TokenOwner; requestId: string };

/** Requires `Authorization: Bearer <personal access token>` and sets `c.var.user`. */
export function requireUser(context: AppContext) {
  return createMiddleware<{ Variables: AuthVariables }>(async (c, next) => {
    const header = c.req.header('authorization');
    const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
    if (!match) {
      throw new AppError(
        'unauthorized',
        'Missing personal access token: send "Authorization: Bearer <token>"; create one with ' +
          '"fixwright users token --login NAME".',
      );
    }
    const user = await findTokenOwner(context.db, match[1]!);
    if (!user) {
      throw new AppError('unauthorized', 'Unknown or revoked personal access token.');
    }
    c.set('user', user);
    await next();
  });
}
