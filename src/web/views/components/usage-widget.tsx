import type { FC } from 'hono/jsx';
import { providers, type Plan } from '../../../db/schema/index.ts';
import { providerNames } from '../../../llm/types.ts';
import type { DailyUsage } from '../../../usage/daily-usage.ts';
import type { UsageStats } from '../../../usage/stats.ts';
import { PlanBadge } from './plan-badge.tsx';
import { UsageChart } from './usage-chart.tsx';

export type UsageLevel = 'ok' | 'warn' | 'danger';

/** Green below 70 %, orange from 70 %, red from 90 % of the limit. */
export function usageLevel(percent: number): UsageLevel {
  if (percent >= 90) return 'danger';
  if (percent >= 70) return 'warn';
  return 'ok';
}

const numberFormat = new Intl.NumberFormat('en-US');

/** Plan suggested near the limit, by plan. Enterprise has no larger plan to move to. */
const nextPlan: Record<Plan, { name: string; verb: string } | null> = {
  free: { name: 'Pro', verb: 'upgrade' },
  pro: { name: 'Enterprise', verb: 'switch' },
  enterprise: null,
};

/**
 * Builds the advice shown from 90 % on: which plan to move to, when the period ends, own keys.
 * A user who cannot switch their own plan is sent to the Plan page, which shows the
 * `users plan` command an admin runs with the user's login filled in.
 * A period whose end has passed stays current until the rollover job starts the next one.
 * Own keys are suggested only for the providers that have none stored. With both stored, the
 * advice states that they pay for the calls that the allowance cannot, which previews do.
 */
export function nearLimitAdvice(stats: UsageStats, canChangePlan: boolean, now = new Date()) {
  const periodEnd = stats.periodEnd.slice(0, 10);
  const next = nextPlan[stats.plan];
  const ended = new Date(stats.periodEnd) <= now;
  const wait = ended
    ? `wait for the next period to start, as this one ended on ${periodEnd} (UTC)`
    : `wait until the period ends on ${periodEnd} (UTC)`;
  const planPage = <a href="/plans">Plan page</a>;
  const keysPage = <a href="/keys">Keys page</a>;
  let upgrade = null;
  if (next && canChangePlan) {
    upgrade = <>{`${next.verb} to ${next.name} on the `}{planPage}</>;
  } else if (next) {
    upgrade = (
      <>
        {`ask an admin to ${next.verb} you to ${next.name} (the `}
        {planPage}
        {' shows the command they run)'}
      </>
    );
  }
  const used = `You have used ${stats.percent}% of your tokens for this period.`;
  const missingKeys = providers.filter((provider) => !stats.ownKeys[provider]);
  if (missingKeys.length === 0) {
    return (
      <>
        {`${used} Your own Groq and Gemini keys on the `}
        {keysPage}
        {' pay for the calls that the allowance cannot. To preview on the allowance again, '}
        {upgrade}
        {`${upgrade ? ' or ' : ''}${wait}.`}
      </>
    );
  }
  const keyToAdd =
    missingKeys.length === 1 ? `your own ${providerNames[missingKeys[0]!]} key` : 'your own Groq or Gemini key';
  return (
    <>
      {`${used} To keep previewing fixes, `}
      {upgrade}
      {`${upgrade ? ', ' : ''}${wait}${upgrade ? ',' : ''} or add ${keyToAdd} on the `}
      {keysPage}.
    </>
  );
}

/** The usage widget's content: plan, progress bar, counts, warning and the daily chart. */
export const UsageWidget: FC<{ stats: UsageStats; days: DailyUsage[]; canChangePlan: boolean }> = ({
  stats,
  days,
  canChangePlan,
}) => {
  const level = usageLevel(stats.percent);
  return (
    <div class="usage" data-plan={stats.plan} data-level={stats.unlimited ? 'unlimited' : level}>
      <div class="usage-head">
        <h2>Token usage</h2>
        <PlanBadge plan={stats.plan} />
      </div>
      {stats.unlimited ? (
        <p class="unlimited">
          <strong>Unlimited</strong> · {numberFormat.format(stats.used)} tokens used this period
        </p>
      ) : (
        <>
          <svg
            class={`usage-bar level-${level}`}
            viewBox="0 0 100 4"
            preserveAspectRatio="none"
            role="progressbar"
            aria-label="Share of the token limit used"
            aria-valuemin="0"
            aria-valuemax="100"
            aria-valuenow={String(stats.percent)}
          >
            <rect class="track" x="0" y="0" width="100" height="4" rx="2" />
            <rect class="fill" x="0" y="0" width={String(stats.percent)} height="4" rx="2" />
          </svg>
          <dl class="usage-numbers">
            <div>
              <dt>Used</dt>
              <dd>{`${numberFormat.format(stats.used)} (${stats.percent}%)`}</dd>
            </div>
            {stats.reserved > 0 ? (
              <div>
                <dt>Reserved</dt>
                <dd>{numberFormat.format(stats.reserved)}</dd>
              </div>
            ) : null}
            <div>
              <dt>Remaining</dt>
              <dd>{numberFormat.format(stats.remaining ?? 0)}</dd>
            </div>
            <div>
              <dt>Limit</dt>
              <dd>{numberFormat.format(stats.limit)}</dd>
            </div>
          </dl>
        </>
      )}
      <p class="muted">
        {`Period ${stats.periodStart.slice(0, 10)} to ${stats.periodEnd.slice(0, 10)} (UTC)`}
      </p>
      {stats.nearLimit ? (
        <p class="warning" role="alert">
          {nearLimitAdvice(stats, canChangePlan)}
        </p>
      ) : null}
      <UsageChart days={days} />
    </div>
  );
};
