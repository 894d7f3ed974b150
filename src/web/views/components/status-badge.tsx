import type { FC } from 'hono/jsx';
import { formatUtc } from './time.tsx';

/** Coloured label for a run, patch request or file status such as "completed" or "failed". */
export const StatusBadge: FC<{ status: string }> = ({ status }) => (
  <span class={`badge status-${status.replace(/[^a-z_]/g, '')}`}>{status.replaceAll('_', ' ')}</span>
);

/**
 * Label for a run whose pull request is closed. The run keeps its own status next to it, so
 * the label explains why its fix buttons are gone.
 */
export const PullRequestClosedBadge: FC<{ closedAt: Date }> = ({ closedAt }) => (
  <span class="badge status-closed" title={`Closed on GitHub at ${formatUtc(closedAt)}`}>
    pull request closed
  </span>
);
