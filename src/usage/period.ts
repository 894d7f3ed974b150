/**
 * Returns when a billing period that started at `start` ends. "monthly" adds one calendar
 * month in UTC (clamped to the month's last day); "Nd" adds N days.
 */
// NOTE: each period is computed from the previous start, so a period starting on the 29th to
// 31st moves to an earlier day after a short month (Jan 31 -> Feb 28 -> Mar 28) and stays there.
export function periodEnd(start: Date, period: string): Date {
  const days = /^(\d+)d$/.exec(period);
  if (days) return new Date(start.getTime() + Number(days[1]) * 86_400_000);

  const end = new Date(start.getTime());
  const day = end.getUTCDate();
  end.setUTCDate(1);
  end.setUTCMonth(end.getUTCMonth() + 1);
  const lastDay = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() + 1, 0)).getUTCDate();
  end.setUTCDate(Math.min(day, lastDay));
  return end;
}
