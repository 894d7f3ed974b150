import type { FC } from 'hono/jsx';
import { plans, type Plan } from '../../../db/schema/index.ts';
import type { ActiveSession } from '../../session/session-store.ts';
import { CsrfField } from './csrf-field.tsx';
import { planNames } from './plan-badge.tsx';

/**
 * Form that switches a plan: the user's own at `/plans`, or with `userId` another user's at
 * `/admin/users/:userId/plan`. With htmx the result replaces `#plan-message-…`, the response
 * replaces the plan and usage that the plans page shows out of band, and the usage widget
 * refreshes on the plan-changed event. Without htmx the server redirects back.
 */
export const PlanSwitchForm: FC<{
  session: ActiveSession;
  current: Plan;
  returnTo: string;
  userId?: string;
}> = ({ session, current, returnTo, userId }) => {
  const action = userId ? `/admin/users/${userId}/plan` : '/plans';
  const messageId = `plan-message-${userId ?? 'self'}`;
  return (
    <form class="plan-switch" method="post" action={action} hx-post={action} hx-target={`#${messageId}`}>
      <CsrfField session={session} />
      <input type="hidden" name="returnTo" value={returnTo} />
      <label>
        Plan <PlanSelect current={current} userId={userId} />
      </label>{' '}
      <button type="submit">Switch plan</button>
      <span id={messageId} class="plan-message" aria-live="polite"></span>
    </form>
  );
};

/**
 * The plan choice of a PlanSwitchForm, with `current` selected. With `oob`, it replaces the
 * form's choice after a plan switch from another form of the page.
 */
export const PlanSelect: FC<{ current: Plan; userId?: string | undefined; oob?: boolean }> = ({
  current,
  userId,
  oob,
}) => (
  <select name="plan" id={`plan-select-${userId ?? 'self'}`} hx-swap-oob={oob ? 'true' : undefined}>
    {plans.map((plan) => (
      <option value={plan} selected={plan === current}>
        {planNames[plan]}
      </option>
    ))}
  </select>
);
