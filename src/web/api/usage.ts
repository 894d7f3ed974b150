import { Hono } from 'hono';
import type { AppContext } from '../../context.ts';
import { getUsageStats } from '../../usage/stats.ts';
import type { AuthVariables } from '../auth.ts';

/** `GET /api/user/usage`: the caller's plan, allowance and period. */
export function usageRoutes(context: AppContext): Hono<{ Variables: AuthVariables }> {
  const app = new Hono<{ Variables: AuthVariables }>();
  app.get('/api/user/usage', async (c) => {
    const stats = await getUsageStats(context.db, context.config, c.var.user.id);
    return c.json(stats);
  });
  return app;
}
