import { sql } from 'drizzle-orm';
import { Hono } from 'hono';
import type { AppContext } from '../context.ts';
import { toSafeError } from '../errors/safe-error.ts';

/** Milliseconds /healthz waits for `SELECT 1` before it reports the database as unreachable. */
const databaseTimeoutMs = 5_000;

/**
 * GET /healthz: 200 `{"status":"ok"}` when `SELECT 1` succeeds, otherwise 503
 * `{"status":"unavailable","reason":...}` with the error code, never 500.
 */
export function healthRoutes(context: AppContext): Hono {
  const app = new Hono();
  app.get('/healthz', async (c) => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(Object.assign(new Error('SELECT 1 timed out'), { code: 'TIMEOUT' })),
        databaseTimeoutMs,
      );
    });
    try {
      await Promise.race([context.db.execute(sql`SELECT 1`), timedOut]);
      return c.json({ status: 'ok' });
    } catch (error) {
      const { type, message, code } = toSafeError(error);
      context.logger.warn(
        { event: 'health.database_unreachable', err: { type, message, code } },
        'health check failed: the database did not answer',
      );
      const cause = code ?? type;
      return c.json(
        { status: 'unavailable', reason: `The database did not answer SELECT 1 (${cause}).` },
        503,
      );
    } finally {
      clearTimeout(timer);
    }
  });
  return app;
}
