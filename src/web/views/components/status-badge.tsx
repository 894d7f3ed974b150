import type { FC } from 'hono/jsx';

/** Coloured label for a run, patch request or file status such as "completed" or "failed". */
export const StatusBadge: FC<{ status: string }> = ({ status }) => (
  <span class={`badge status-${status.replace(/[^a-z_]/g, '')}`}>{status.replaceAll('_', ' ')}</span>
);
