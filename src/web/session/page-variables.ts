import type { TokenOwner } from '../../users/api-tokens.ts';
import type { ActiveSession } from './session-store.ts';

/** Context variables of every signed-in page route. */
export type PageVariables = { user: TokenOwner; session: ActiveSession; requestId: string };
