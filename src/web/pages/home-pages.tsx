import { Hono } from 'hono';
import { missingSettings } from '../../config/env.ts';
import type { AppContext } from '../../context.ts';
import { listPlatformKeyRejections } from '../../keys/platform-key-rejections.ts';
import { listVisibleRuns } from '../../runs/visible-runs.ts';
import { listUserInstallations } from '../../users/list-user-installations.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import { UsageWidget } from '../views/components/usage-widget.tsx';
import { HomePage } from '../views/home.tsx';
import { canChangeOwnPlan, loadUsage } from './load-usage.ts';

const recentRunCount = 20;

/** `GET /` (home) and `GET /usage/widget` (the usage widget fragment that htmx polls). */
export function homePages(context: AppContext): Hono<{ Variables: PageVariables }> {
  const app = new Hono<{ Variables: PageVariables }>();
  app.use('/', requirePageSession(context));
  app.use('/usage/*', requirePageSession(context));

  app.get('/', async (c) => {
    const userId = c.var.user.id;
    const [installations, runs, usage, rejections] = await Promise.all([
      listUserInstallations(context.db, userId),
      listVisibleRuns(context.db, userId, { limit: recentRunCount }),
      loadUsage(context, userId),
      listPlatformKeyRejections(context.db, context.config),
    ]);
    return c.html(
      <HomePage
        session={c.var.session}
        missing={missingSettings(context.config)}
        installations={installations}
        runs={runs}
        usage={usage}
        canChangePlan={canChangeOwnPlan(context, c.var.user)}
        platformKeyRejections={rejections}
        recheckSeconds={context.config.PLATFORM_KEY_RECHECK_SECONDS}
      />,
    );
  });

  // The widget is a fragment that the home page polls, so a browser that opens it gets the page.
  app.get('/usage/widget', async (c) => {
    if (!c.req.header('hx-request')) return c.redirect('/', 303);
    const { stats, days } = await loadUsage(context, c.var.user.id);
    return c.html(
      <UsageWidget stats={stats} days={days} canChangePlan={canChangeOwnPlan(context, c.var.user)} />,
    );
  });

  return app;
}
