import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { requestId } from 'hono/request-id';
import { secureHeaders } from 'hono/secure-headers';
import type { AppContext } from '../context.ts';
import { shortenText } from '../text/quote-value.ts';
import { keyRoutes } from './api/keys.ts';
import { applyRoutes } from './api/apply.ts';
import { patchRequestRoutes } from './api/patch-requests.ts';
import { runRoutes } from './api/runs.ts';
import { usageRoutes } from './api/usage.ts';
import { requireUser, type AuthVariables } from './auth.ts';
import { AppError, handleError } from './errors.ts';
import { healthRoutes } from './health.ts';
import { homePages } from './pages/home-pages.tsx';
import { keyPages } from './pages/key-pages.tsx';
import { patchRequestPages } from './pages/patch-request-pages.tsx';
import { planPages } from './pages/plan-pages.tsx';
import { runPages } from './pages/run-pages.tsx';
import { signInPages } from './pages/sign-in-pages.tsx';
import { tokenPages } from './pages/token-pages.tsx';
import { rejectNulInQuery } from './reject-nul-in-query.ts';
import { strictTransportSecurity } from './strict-transport-security.ts';
import type { ByteBudget } from './read-limited-body.ts';
import { isIncompleteWebhookBody, webhookRoutes } from './webhooks.ts';

const publicDir = fileURLToPath(new URL('../../public/', import.meta.url));
const htmxFile = createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js');
/** Maximum length, in characters, of the request path that an unknown route's message repeats. */
const maxEchoedPathLength = 200;

/** Largest JSON API body; 1,000 finding ids, the most a patch request takes, need about 40 KB. */
export const maxApiBodyBytes = 1024 * 1024;

/**
 * Largest dashboard form body. The largest form, "Preview fix" with 1,000 ticked findings, is
 * about 48 KB (48 bytes per `findingIds=<uuid>&`). Parsing a form buffers all of it in memory.
 */
export const maxFormBodyBytes = 1024 * 1024;

const routinePath = /^\/(public\/|favicon\.ico$|healthz$|usage\/widget$)|\/(progress|files)$/;

/**
 * Builds the HTTP application: webhooks, the JSON API, the dashboard pages and static files.
 * `options.webhookBodyBudget` replaces the budget of webhook bodies not processed yet.
 */
export function createApp(
  context: AppContext,
  options: { webhookBodyBudget?: ByteBudget } = {},
): Hono<{ Variables: AuthVariables }> {
  const app = new Hono<{ Variables: AuthVariables }>();
  const { logger } = context;

  app.use(requestId());
  app.use(async (c, next) => {
    const startedAt = performance.now();
    await next();
    // Static files, health checks and the fragments that pages poll every few seconds would
    // drown the log at info, so successful ones are logged at debug. So are webhook bodies
    // dropped as incomplete, because a client with many open connections can cause hundreds.
    const routine =
      (c.res.status < 400 && c.req.method === 'GET' && routinePath.test(c.req.path)) ||
      isIncompleteWebhookBody(c);
    logger[routine ? 'debug' : 'info'](
      {
        event: 'http.request',
        requestId: c.get('requestId'),
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        durationMs: Math.round(performance.now() - startedAt),
      },
      'request',
    );
  });
  // Scripts and styles come only from /public, so injected markup cannot run code.
  app.use(
    secureHeaders({
      // Sent by strictTransportSecurity below, only on requests that arrived over HTTPS.
      strictTransportSecurity: false,
      // No page is meant to be framed, so this agrees with frame-ancestors 'none' below for
      // browsers that only read X-Frame-Options. hono's default is SAMEORIGIN.
      xFrameOptions: 'DENY',
      contentSecurityPolicy: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
      },
    }),
  );
  app.use(strictTransportSecurity(context.config));
  app.use(rejectNulInQuery);
  app.onError((error, c) => handleError(error, c, logger));
  app.notFound((c) => {
    const path = shortenText(c.req.path, maxEchoedPathLength);
    const error = new AppError('not_found', `No route for ${c.req.method} ${path}.`);
    return handleError(error, c, logger);
  });

  app.route('/', healthRoutes(context));
  app.get('/favicon.ico', (c) => c.body(null, 204));
  app.get('/public/htmx.min.js', serveStatic({ path: htmxFile }));
  app.use(
    '/public/*',
    serveStatic({
      root: publicDir,
      rewriteRequestPath: (requestPath) => requestPath.replace(/^\/public/, ''),
    }),
  );

  app.route('/', webhookRoutes(context, { bodyBudget: options.webhookBodyBudget }));

  // API responses contain per-user data, so no shared or browser cache may keep them. Set
  // after the handler, so that errors, a 401 included, carry the header too.
  app.use('/api/*', async (c, next) => {
    await next();
    c.header('Cache-Control', 'private, no-store');
  });
  app.use('/api/*', requireUser(context));
  app.use(
    '/api/*',
    bodyLimit({
      maxSize: maxApiBodyBytes,
      onError: () => {
        throw new AppError(
          'payload_too_large',
          `Request body is larger than the JSON API's limit of ${maxApiBodyBytes} bytes; ` +
            'send a smaller body.',
        );
      },
    }),
  );
  app.route('/', runRoutes(context));
  app.route('/', patchRequestRoutes(context));
  app.route('/', applyRoutes(context));
  app.route('/', usageRoutes(context));
  app.route('/', keyRoutes(context));

  // Registered after the webhook and API routes, which return before reaching it and have
  // limits of their own, so it limits the dashboard's form posts only.
  app.use(
    bodyLimit({
      maxSize: maxFormBodyBytes,
      onError: () => {
        throw new AppError(
          'payload_too_large',
          `Form body is larger than the limit of ${maxFormBodyBytes} bytes; reload the page ` +
            'and submit the form again.',
        );
      },
    }),
  );
  app.route('/', signInPages(context));
  app.route('/', homePages(context));
  app.route('/', runPages(context));
  app.route('/', patchRequestPages(context, (request) => app.fetch(request)));
  app.route('/', planPages(context));
  app.route('/', tokenPages(context));
  app.route('/', keyPages(context));
  return app;
}
