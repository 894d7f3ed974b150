import type { FC } from 'hono/jsx';
import { formatUtc } from './time.tsx';

/** Coloured label for a run, patch request or file status such as "completed" or "failed". */
export const StatusBadge: FC<{ status: string }> = ({ status }) => (
  <span class={`badge status-${status.replace(/[^a-z_]/g, '')}`}>{status.replaceAll('_', ' ')}</span>
);

/**
 * Label for a condition that stops fixes for a run, such as a closed pull request. The run keeps
 * its own status next to it, so the label explains why its fix buttons are gone.
 */
export const BlockedBadge: FC<{ kind: string; label: string; title: string }> = ({
  kind,
  label,
  title,
}) => (
  <span class={`badge status-${kind}`} title={title}>
    {label}
  </span>
);

/** Label for a run whose pull request is closed. */
export const PullRequestClosedBadge: FC<{ closedAt: Date }> = ({ closedAt }) => (
  <BlockedBadge
    kind="closed"
    label="pull request closed"
    title={`Closed on GitHub at ${formatUtc(closedAt)}`}
  />
);
