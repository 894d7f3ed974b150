import type { FC } from 'hono/jsx';
import type { prRuns } from '../../db/schema/index.ts';
import type { DailyUsage } from '../../usage/daily-usage.ts';
import type { UsageStats } from '../../usage/stats.ts';
import type { listUserInstallations } from '../../users/list-user-installations.ts';
import type { ActiveSession } from '../session/session-store.ts';
import type { RunInstallation } from '../../runs/visible-runs.ts';
import { FixBlockerBadges, listFixBlockers } from './components/fix-blockers.tsx';
import type { PlatformKeyRejection } from '../../keys/platform-key-rejections.ts';
import { PlatformKeyNotice } from './components/platform-key-notice.tsx';
import { MarkedText } from './components/marked-text.tsx';
import { PlanSwitchForm } from './components/plan-switch-form.tsx';
import { StatusBadge } from './components/status-badge.tsx';
import { Time } from './components/time.tsx';
import { UsageWidget } from './components/usage-widget.tsx';
import { Layout } from './layout.tsx';

type Installation = Awaited<ReturnType<typeof listUserInstallations>>[number];
type Run = typeof prRuns.$inferSelect;

/** The signed-in home page: usage, installations and recent pull request runs. */
export const HomePage: FC<{
  session: ActiveSession;
  missing: string[];
  installations: Installation[];
  runs: { run: Run; installation: RunInstallation }[];
  usage: { stats: UsageStats; days: DailyUsage[] };
  canChangePlan: boolean;
  platformKeyRejections: PlatformKeyRejection[];
  recheckSeconds: number;
}> = ({ session, missing, installations, runs, usage, canChangePlan, platformKeyRejections, recheckSeconds }) => (
  <Layout title="Home" session={session}>
    {missing.length > 0 && session.user.role === 'admin' ? (
      <section class="card notice">
        <h2>Configuration needed</h2>
        <p>Set these environment variables and restart:</p>
        <ul>
          {missing.map((line) => (
            <li>{line}</li>
          ))}
        </ul>
      </section>
    ) : null}
    <PlatformKeyNotice
      rejections={platformKeyRejections}
      admin={session.user.role === 'admin'}
      recheckSeconds={recheckSeconds}
    />

    <section
      id="usage-widget"
      class="card"
      hx-get="/usage/widget"
      hx-trigger="load, every 30s, plan-changed from:body"
      hx-swap="innerHTML"
    >
      <UsageWidget stats={usage.stats} days={usage.days} canChangePlan={canChangePlan} />
    </section>
    {canChangePlan ? (
      <section class="card">
        <PlanSwitchForm session={session} current={usage.stats.plan} returnTo="/" />
      </section>
    ) : null}

    <section class="card">
      <h2>Installations</h2>
      {installations.length === 0 ? (
        <p class="muted">
          No installations. Install the GitHub App on an account or organization, and it appears
          here after GitHub sends the installation event. Installations that were uninstalled are
          not listed, but their runs stay below.
        </p>
      ) : (
        <ul class="installations">
          {installations.map((installation) => (
            <li>
              <strong>{installation.accountLogin}</strong>{' '}
              <span class="muted">{`${installation.accountType} · installation ${installation.id}`}</span>
              {installation.suspendedAt ? <span class="badge status-failed">suspended</span> : null}
            </li>
          ))}
        </ul>
      )}
    </section>

    <section class="card">
      <h2>Recent pull request runs</h2>
      {runs.length === 0 ? (
        <p class="muted">No runs yet. Runs appear when a pull request opens or gets new commits.</p>
      ) : (
        <table class="runs">
          <thead>
            <tr>
              <th>Pull request</th>
              <th>Title</th>
              <th>Status</th>
              <th>Started</th>
            </tr>
          </thead>
          <tbody>
            {runs.map(({ run, installation }) => (
              <tr>
                <td>
                  <a href={`/runs/${run.id}`}>{`${run.repository}#${run.prNumber}`}</a>
                </td>
                <td>
                  <MarkedText text={run.prTitle} />
                </td>
                <td>
                  <StatusBadge status={run.status} />{' '}
                  <FixBlockerBadges blockers={listFixBlockers(run, installation)} />
                  {run.status === 'cancelled' && run.error ? (
                    <p class="muted">
                      <MarkedText text={run.error} />
                    </p>
                  ) : null}
                </td>
                <td>
                  <Time date={run.createdAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  </Layout>
);
