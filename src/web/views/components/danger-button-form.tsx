import type { FC } from 'hono/jsx';
import type { ActiveSession } from '../../session/session-store.ts';
import { CsrfField } from './csrf-field.tsx';

/** A one-button form that posts to `action` with the CSRF token, for deletes and revokes. */
export const DangerButtonForm: FC<{ session: ActiveSession; action: string; label: string }> = ({
  session,
  action,
  label,
}) => (
  <form method="post" action={action}>
    <CsrfField session={session} />
    <button type="submit" class="danger">
      {label}
    </button>
  </form>
);
