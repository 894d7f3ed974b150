import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import type { AppContext } from '../../context.ts';
import { readSessionCookie } from './cookies.ts';
import { isUnsafeMethod, requireCsrfToken } from './csrf.ts';
import { requireValidFormBody } from './form-body.ts';
import type { PageVariables } from './page-variables.ts';
import { findSession } from './session-store.ts';

/** Builds the sign-in URL that returns to the current page afterwards. */
export function signInLocation(c: Context): string {
  if (c.req.method !== 'GET') return '/sign-in';
  const url = new URL(c.req.url);
  return `/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`;
}

/**
 * Requires a signed-in session for a page route and sets `c.var.session` and `c.var.user`.
 * Without one, a page redirects to the sign-in page. Unsafe methods must carry the
 * session's CSRF token in the X-CSRF-Token header or the _csrf form field, else 403, and a
 * form body that does not parse gets 400.
 */
export function requirePageSession(context: AppContext) {
  return createMiddleware<{ Variables: PageVariables }>(async (c, next) => {
    const token = readSessionCookie(c, context.config);
    const session = token ? await findSession(context.db, token) : null;
    if (!session) {
      const location = signInLocation(c);
      if (c.req.header('hx-request')) {
        // htmx follows HX-Redirect with a full page load instead of swapping the sign-in page in.
        c.header('HX-Redirect', location);
        return c.body(null, 401);
      }
      return c.redirect(location, 303);
    }

    if (isUnsafeMethod(c.req.method)) await requireValidFormBody(c);
    await requireCsrfToken(c, session, context.logger, {
      allowFormField: true,
      message: 'Invalid or missing CSRF token: reload the page and submit the form again.',
    });

    // Signed-in pages show private data, so no shared or browser cache may keep them.
    c.header('Cache-Control', 'private, no-store');
    c.set('session', session);
    c.set('user', { id: session.user.id, login: session.user.login, role: session.user.role });
    await next();
  });
}
