import { formatCount } from './plural.ts';

const secondsPerDay = 86_400;

/**
 * Formats a delay in seconds that a server requested before a retry, rounded up to whole
 * seconds, minutes or hours: "7 s", "2 minutes", "3 hours". A delay longer than a day reads
 * "more than a day", because a header such as `retry-after: 99999999999999999999` gives no
 * useful time to wait.
 */
export function formatRetryDelay(seconds: number): string {
  if (!(seconds <= secondsPerDay)) return 'more than a day';
  if (seconds < 120) return `${Math.ceil(seconds)} s`;
  if (seconds < 7200) return formatCount(Math.ceil(seconds / 60), 'minute');
  return formatCount(Math.ceil(seconds / 3600), 'hour');
}
