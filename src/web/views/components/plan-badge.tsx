import type { FC } from 'hono/jsx';
import type { Plan } from '../../../db/schema/index.ts';

export const planNames: Record<Plan, string> = {
  free: 'Free',
  pro: 'Pro',
  enterprise: 'Enterprise',
};

export const PlanBadge: FC<{ plan: Plan }> = ({ plan }) => (
  <span class={`badge plan plan-${plan}`}>{planNames[plan]}</span>
);
