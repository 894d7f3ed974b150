import type { FC } from 'hono/jsx';
import { csrfFieldName } from '../../session/csrf.ts';
import type { ActiveSession } from '../../session/session-store.ts';

/** Hidden field with the session's CSRF token; every form that posts needs one. */
export const CsrfField: FC<{ session: ActiveSession }> = ({ session }) => (
  <input type="hidden" name={csrfFieldName} value={session.csrfToken} />
);
