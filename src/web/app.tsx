import { sql } from 'drizzle-orm';
import { Hono } from 'hono';
import { requestId } from 'hono/request-id';
import type { AppContext } from '../context.ts';
import { missingSettings } from '../config/env.ts';
import { applyRoutes } from './api/apply.ts';
import { patchRequestRoutes } from './api/patch-requests.ts';
import { runRoutes } from './api/runs.ts';
import { usageRoutes } from './api/usage.ts';
import { requireUser, type AuthVariables } from './auth.ts';
import { AppError, handleError } from './errors.ts';
import { HomePage } from './views/home.tsx';
import { webhookRoutes } from './webhooks.ts';

/** Builds the HTTP application: webhooks, the JSON API and the pages. */
export function createApp(context: AppContext): Hono<{ Variables: AuthVariables }> {
  const app = new Hono<{ Variables: AuthVariables }>();
  const { logger } = context;

  app.use(requestId());
  app.use(async (c, next) => {
    const startedAt = performance.now();
    await next();
    logger.info(
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
  app.onError((error, c) => handleError(error, c, logger));
  app.notFound((c) => handleError(new AppError('not_found', `No route for ${c.req.method} ${c.req.path}.`), c, logger));

  app.get('/healthz', async (c) => {
    await context.db.execute(sql`SELECT 1`);
    return c.json({ status: 'ok' });
  });
  app.get('/favicon.ico', (c) => c.body(null, 204));
  app.get('/', (c) => c.html(<HomePage missing={missingSettings(context.config)} />));

  app.route('/', webhookRoutes(context));

  app.use('/api/*', requireUser(context));
  app.route('/', runRoutes(context));
  app.route('/', patchRequestRoutes(context));
  app.route('/', applyRoutes(context));
  app.route('/', usageRoutes(context));
  return app;
}
