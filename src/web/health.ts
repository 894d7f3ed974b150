import { sql } from 'drizzle-orm';
import { Hono } from 'hono';
import type { AppContext } from '../context.ts';
import { OutageLog } from '../db/outage-log.ts';
import { toSafeError } from '../errors/safe-error.ts';

/** Milliseconds /healthz waits for `SELECT 1` before it reports the database as unreachable. */
const databaseTimeoutMs = 5_000;

/** Minimum milliseconds between two warnings of one outage, since monitors poll /healthz often. */
export const healthWarningIntervalMs = 60_000;

/**
 * GET /healthz: 200 `{"status":"ok"}` when `SELECT 1` succeeds, otherwise 503
 * `{"status":"unavailable","reason":...}` with the error code, never 500. A failure is logged
 * as a warning when the database becomes unreachable and then at most once a minute, with the
 * count of failures not logged, and the first success after that is logged at info.
 */
export function healthRoutes(context: AppContext): Hono {
  const app = new Hono();
  const outageLog = new OutageLog(healthWarningIntervalMs);
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
      outageLog.recover((suppressed) => {
        context.logger.info(
          { event: 'health.database_reachable', suppressedErrors: suppressed },
          'health check passed again: the database is reachable',
        );
      });
      return c.json({ status: 'ok' });
    } catch (error) {
      const { type, message, code } = toSafeError(error);
      outageLog.fail((suppressed) => {
        context.logger.warn(
          { event: 'health.database_unreachable', err: { type, message, code }, suppressedErrors: suppressed },
          'health check failed: the database did not answer. ' +
            'Further failures are logged at most once a minute',
        );
      });
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
