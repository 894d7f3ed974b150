import type { FC } from 'hono/jsx';
import { plans, type Plan } from '../../../db/schema/index.ts';
import type { ActiveSession } from '../../session/session-store.ts';
import { CsrfField } from './csrf-field.tsx';
import { planNames } from './plan-badge.tsx';

/**
 * Form that switches a plan: the user's own at `/plans`, or with `userId` another user's at
 * `/admin/users/:userId/plan`. With htmx the result replaces `#plan-message-…` and the
 * usage widget refreshes on the plan-changed event; without it the server redirects back.
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
        Plan{' '}
        <select name="plan">
          {plans.map((plan) => (
            <option value={plan} selected={plan === current}>
              {planNames[plan]}
            </option>
          ))}
        </select>
      </label>{' '}
      <button type="submit">Switch plan</button>
      <span id={messageId} class="plan-message" aria-live="polite"></span>
    </form>
  );
};
