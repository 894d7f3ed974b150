import { Hono, type Context } from 'hono';
import type { AppContext } from '../../context.ts';
import {
  authorizeUrl,
  exchangeCode,
  fetchGitHubUser,
  GitHubOAuthError,
} from '../../github/oauth.ts';
import { syncAdminRole } from '../../users/sync-admin-role.ts';
import { upsertGitHubUser } from '../../users/upsert-github-user.ts';
import { AppError } from '../errors.ts';
import { clientAddress, rateLimitKey } from '../session/client-address.ts';
import {
  clearSessionCookie,
  clearStateCookie,
  readSessionCookie,
  readStateCookie,
  writeSessionCookie,
  writeStateCookie,
} from '../session/cookies.ts';
import { tokensMatch } from '../session/csrf.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { PostgresRateLimiter } from '../session/rate-limiter.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import { safeReturnPath } from '../session/return-path.ts';
import {
  consumeOAuthState,
  createOAuthState,
  createSession,
  deleteExpiredSessions,
  deleteSession,
  findSession,
} from '../session/session-store.ts';
import { SignInPage } from '../views/sign-in.tsx';

const rateLimitWindowSeconds = 10 * 60;

// A Map, because an object literal would also return inherited members such as `constructor`.
const notices = new Map([['signed-out', 'You are signed out.']]);

/**
 * Builds the message for a callback with GitHub's `error` parameter. Anyone can link to the
 * callback with any text in it, so only an error code (`redirect_uri_mismatch`, say) is shown,
 * never a sentence that would read as this site's own.
 */
function describeCallbackError(error: string): string {
  if (error === 'access_denied') {
    return 'Sign-in was cancelled on GitHub; sign in again to use the dashboard.';
  }
  if (/^[a-z_]{1,64}$/.test(error)) {
    return `GitHub returned the error ${JSON.stringify(error)}; start again from the sign-in page.`;
  }
  return 'GitHub returned an error; start again from the sign-in page.';
}

/** The callback URL registered on the GitHub App: PUBLIC_URL's, or else this request's origin. */
export function callbackUrl(c: Context, publicUrl: string | undefined): string {
  return `${publicUrl ?? new URL(c.req.url).origin}/auth/github/callback`;
}

/** `GET /sign-in`, `GET /auth/github`, `GET /auth/github/callback` and `POST /sign-out`. */
export function signInPages(context: AppContext): Hono<{ Variables: PageVariables }> {
  const { config, db, logger } = context;
  const app = new Hono<{ Variables: PageVariables }>();
  const limiter = new PostgresRateLimiter(db, 'sign-in', config.SIGN_IN_RATE_LIMIT, rateLimitWindowSeconds);

  /** Counts one sign-in request from the client's address; throws 429 past the limit. */
  const countSignInRequest = async (c: Context<{ Variables: PageVariables }>) => {
    const address = clientAddress(c, config);
    const limitKey = rateLimitKey(address);
    const { allowed, retryAfterSeconds } = await limiter.consume(limitKey);
    if (allowed) return;
    logger.warn(
      { event: 'sign_in.rate_limited', requestId: c.get('requestId'), address, limitKey, retryAfterSeconds },
      'too many sign-in requests',
    );
    c.header('Retry-After', String(retryAfterSeconds));
    const minutes = Math.ceil(retryAfterSeconds / 60);
    throw new AppError(
      'rate_limited',
      `Too many sign-in attempts from your address: wait ${minutes} ` +
        `minute${minutes === 1 ? '' : 's'} and try again.`,
    );
  };

  /**
   * Rejects a sign-in request that the browser did not make as a page load, such as an <img>,
   * frame or fetch() on another site's page. Each one would count against the address's
   * SIGN_IN_RATE_LIMIT, so any site could lock its visitors out of signing in. Browsers name
   * the kind of request in Sec-Fetch-Dest, and clients that send none, such as curl, pass.
   */
  const rejectEmbeddedRequest = (c: Context<{ Variables: PageVariables }>) => {
    const destination = c.req.header('sec-fetch-dest');
    if (destination === undefined || destination === 'document') return;
    logger.info(
      {
        event: 'sign_in.embedded_request',
        requestId: c.get('requestId'),
        path: c.req.path,
        destination: destination.slice(0, 40),
      },
      'sign-in request not made as a page load rejected',
    );
    throw new AppError(
      'forbidden',
      'Sign-in works only as a page load, not from an image, frame or script of another page; ' +
        'open it as a page.',
    );
  };

  const oauthClient = () => {
    const { GITHUB_CLIENT_ID: clientId, GITHUB_CLIENT_SECRET: clientSecret } = config;
    if (!clientId || !clientSecret) {
      throw new AppError(
        'not_configured',
        'Sign-in is not configured: set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET to the ' +
          "GitHub App's OAuth client id and secret, then restart Fixwright.",
      );
    }
    return { clientId, clientSecret };
  };

  app.get('/sign-in', async (c) => {
    const next = safeReturnPath(c.req.query('next'));
    const token = readSessionCookie(c, config);
    if (token && (await findSession(db, token))) return c.redirect(next, 303);
    const configured = Boolean(config.GITHUB_CLIENT_ID && config.GITHUB_CLIENT_SECRET);
    const notice = notices.get(c.req.query('notice') ?? '');
    return c.html(<SignInPage configured={configured} next={next} notice={notice} />);
  });

  app.get('/auth/github', async (c) => {
    rejectEmbeddedRequest(c);
    await countSignInRequest(c);
    const { clientId } = oauthClient();
    const state = await createOAuthState(db, safeReturnPath(c.req.query('next')));
    writeStateCookie(c, config, state);
    return c.redirect(
      authorizeUrl(config, { clientId, callbackUrl: callbackUrl(c, config.PUBLIC_URL), state }),
      302,
    );
  });

  app.get('/auth/github/callback', async (c) => {
    rejectEmbeddedRequest(c);
    const { clientId, clientSecret } = oauthClient();
    const { code, state, error } = c.req.query();
    const stateCookie = readStateCookie(c, config);
    clearStateCookie(c, config);
    // The cookie binds the state to this browser, so a callback link sent by someone else fails.
    const stateMatches = state !== undefined && tokensMatch(state, stateCookie);
    // A state is used once, also by a callback that reports an error such as a cancelled
    // sign-in. The start that created the state was counted against the rate limit, so a
    // callback that consumes it is not counted again. Every other callback is counted, so
    // that the callback cannot be called for free in place of the start.
    const returnTo = stateMatches ? await consumeOAuthState(db, state) : null;
    if (returnTo === null) await countSignInRequest(c);
    if (error) {
      throw new AppError('bad_request', describeCallbackError(error));
    }
    if (!code || !state) {
      throw new AppError(
        'bad_request',
        'Missing code or state in the sign-in callback; start again from the sign-in page.',
      );
    }
    if (!stateMatches) {
      throw new AppError(
        'forbidden',
        "Sign-in state does not match this browser's; start again from the sign-in page.",
      );
    }
    if (returnTo === null) {
      throw new AppError(
        'forbidden',
        'Sign-in state is unknown, used or expired; start again from the sign-in page.',
      );
    }

    let account;
    try {
      const redirect = callbackUrl(c, config.PUBLIC_URL);
      const accessToken = await exchangeCode(config, {
        clientId,
        clientSecret,
        code,
        callbackUrl: redirect,
      });
      account = await fetchGitHubUser(config, accessToken);
    } catch (failure) {
      if (!(failure instanceof GitHubOAuthError)) throw failure;
      logger.warn(
        { event: 'sign_in.failed', requestId: c.get('requestId'), reason: failure.message },
        'GitHub sign-in failed',
      );
      throw new AppError('bad_gateway', failure.message);
    }

    const userId = await upsertGitHubUser(db, account, config);
    const role = await syncAdminRole(context, { id: userId, login: account.login, githubId: account.id });
    // A new token on every sign-in, so a session id planted before sign-in is worthless.
    const previous = readSessionCookie(c, config);
    if (previous) await deleteSession(db, previous);
    await deleteExpiredSessions(db);
    const session = await createSession(db, userId, config.SESSION_TTL_HOURS);
    writeSessionCookie(c, config, session.token, session.expiresAt);
    logger.info(
      {
        event: 'auth.signed_in',
        requestId: c.get('requestId'),
        userId,
        login: account.login,
        githubId: account.id,
        role,
        sessionId: session.id,
      },
      'user signed in',
    );
    return c.redirect(returnTo, 303);
  });

  // A cookie of an expired or unknown session signs no one in, so it is cleared without the
  // CSRF check that requirePageSession makes, which needs a live session's token. A request
  // without the cookie gets no Set-Cookie, because another site's form can post here as a
  // top-level navigation. The browser sends that post without the SameSite=Lax cookie but
  // applies a Set-Cookie in its response, which would sign the user out.
  app.post('/sign-out', async (c, next) => {
    const token = readSessionCookie(c, config);
    const session = token ? await findSession(db, token) : null;
    if (session) return next();
    if (token !== undefined) {
      await deleteSession(db, token);
      clearSessionCookie(c, config);
    }
    logger.info(
      { event: 'auth.signed_out_without_session', requestId: c.get('requestId'), hadCookie: token !== undefined },
      'sign-out without a live session: cookie cleared',
    );
    return c.redirect('/sign-in?notice=signed-out', 303);
  });
  app.post('/sign-out', requirePageSession(context), async (c) => {
    const token = readSessionCookie(c, config);
    if (token) await deleteSession(db, token);
    clearSessionCookie(c, config);
    logger.info(
      {
        event: 'auth.signed_out',
        requestId: c.get('requestId'),
        userId: c.var.user.id,
        sessionId: c.var.session.id,
      },
      'user signed out',
    );
    return c.redirect('/sign-in?notice=signed-out', 303);
  });

  return app;
}
