import type { FC } from 'hono/jsx';

/** Formats a moment as "2025-01-31 14:05 UTC". */
export function formatUtc(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export const Time: FC<{ date: Date | null; empty?: string }> = ({ date, empty = 'never' }) =>
  date ? <time datetime={date.toISOString()}>{formatUtc(date)}</time> : <span class="muted">{empty}</span>;
