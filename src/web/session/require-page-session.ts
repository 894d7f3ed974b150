import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import type { Config } from '../../config/env.ts';
import type { AppContext } from '../../context.ts';
import { readSessionCookie } from './cookies.ts';
import { isUnsafeMethod, requireCsrfToken } from './csrf.ts';
import { requireValidFormBody } from './form-body.ts';
import type { PageVariables } from './page-variables.ts';
import { safeReturnPath } from './return-path.ts';
import { findSession } from './session-store.ts';

/** Builds the sign-in URL that returns to the current page afterwards. */
export function signInLocation(c: Context, config: Config): string {
  if (c.req.header('hx-request')) return htmxSignInLocation(c, config);
  if (c.req.method !== 'GET') return '/sign-in';
  const url = new URL(c.req.url);
  return `/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`;
}

/**
 * Builds the sign-in URL for an htmx request, whose own URL is a fragment such as the polled
 * usage widget. It returns to the page in the browser, which htmx sends as HX-Current-URL,
 * when that page has the request's origin or PUBLIC_URL's, and otherwise to the home page.
 */
function htmxSignInLocation(c: Context, config: Config): string {
  let page: URL;
  try {
    page = new URL(c.req.header('hx-current-url') ?? '');
  } catch {
    return '/sign-in';
  }
  const origins = [new URL(c.req.url).origin];
  if (config.PUBLIC_URL) origins.push(new URL(config.PUBLIC_URL).origin);
  if (!origins.includes(page.origin)) return '/sign-in';
  const next = safeReturnPath(page.pathname + page.search);
  return next === '/' ? '/sign-in' : `/sign-in?next=${encodeURIComponent(next)}`;
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
      const location = signInLocation(c, context.config);
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
