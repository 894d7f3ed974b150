import { createMiddleware } from 'hono/factory';
import type { AppContext } from '../context.ts';
import { findTokenOwner, type TokenOwner } from '../users/api-tokens.ts';
import { AppError } from './errors.ts';
import { readSessionCookie } from './session/cookies.ts';
import { requireCsrfToken } from './session/csrf.ts';
import { signInLocation } from './session/require-page-session.ts';
import { findSession } from './session/session-store.ts';

export type AuthVariables = { user: TokenOwner; requestId: string };

/**
 * Requires `Authorization: Bearer <personal access token>` or a dashboard session cookie, and
 * sets `c.var.user`. A cookie-authenticated POST, PUT, PATCH or DELETE must also send the
 * session's CSRF token in X-CSRF-Token, because browsers attach cookies to cross-site requests.
 */
export function requireUser(context: AppContext) {
  return createMiddleware<{ Variables: AuthVariables }>(async (c, next) => {
    const header = c.req.header('authorization');
    if (header !== undefined) {
      const match = header.match(/^Bearer\s+(\S+)\s*$/i);
      if (!match) {
        throw new AppError(
          'unauthorized',
          'Invalid Authorization header: send "Authorization: Bearer <token>".',
        );
      }
      const user = await findTokenOwner(context.db, match[1]!);
      if (!user) {
        // The same message for every token that fails, so it reveals nothing about the
        // token. The hint covers a common mistake: `users token` run on another database, such
        // as from a folder whose ./data is not the service's DATA_DIR.
        throw new AppError(
          'unauthorized',
          'Unknown or revoked personal access token. A token created with "fixwright users ' +
            'token" works only when the command used the database of this service, with the ' +
            'same DATA_DIR or DATABASE_URL.',
        );
      }
      c.set('user', user);
      return next();
    }

    const token = readSessionCookie(c, context.config);
    const session = token ? await findSession(context.db, token) : null;
    if (!session && token !== undefined) {
      // Dashboard pages call the API with the cookie, as the preview's Apply button does
      // through htmx, so htmx is sent to sign in and back to the page.
      if (c.req.header('hx-request')) c.header('HX-Redirect', signInLocation(c, context.config));
      throw new AppError(
        'unauthorized',
        'Your dashboard session has expired or was signed out: sign in again, or send ' +
          '"Authorization: Bearer <token>" with a personal access token.',
      );
    }
    if (!session) {
      throw new AppError(
        'unauthorized',
        'Missing personal access token: send "Authorization: Bearer <token>"; create one on ' +
          'the Tokens page or with "fixwright users token --login NAME".',
      );
    }
    await requireCsrfToken(c, session, context.logger, {
      allowFormField: false,
      message:
        'Missing or invalid X-CSRF-Token header: a request authenticated by the session ' +
        "cookie must send the token from the page's csrf-token meta tag.",
    });
    c.set('user', { id: session.user.id, login: session.user.login, role: session.user.role });
    await next();
  });
}
