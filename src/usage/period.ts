/**
 * Returns `anchor` moved by `months` calendar months in UTC, at the same time of day. The day
 * of month is clamped to the target month's last day, so Jan 31 plus one month is Feb 28 (Feb
 * 29 in leap years). `months` may be negative.
 */
export function addMonthsClamped(anchor: Date, months: number): Date {
  const year = anchor.getUTCFullYear();
  const month = anchor.getUTCMonth() + months;
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return new Date(
    Date.UTC(
      year,
      month,
      Math.min(anchor.getUTCDate(), lastDay),
      anchor.getUTCHours(),
      anchor.getUTCMinutes(),
      anchor.getUTCSeconds(),
      anchor.getUTCMilliseconds(),
    ),
  );
}

/**
 * Returns when a billing period that started at `start` ends.
 *
 * "Nd" periods are N days long: the end is `start` plus N × 24 hours, and `anchor` is unused.
 *
 * Monthly periods keep the day of month and UTC time of day of `anchor`, which is
 * `users.period_anchor_at`: the start of the user's first period, of the last period
 * started by hand (a usage reset), or of the last switch to pro. The rollover job leaves the
 * anchor alone. The anchor is stored because a clamped start such as Feb 28 no longer shows
 * whether the periods belong to the 28th or the 31st. Every boundary is `anchor` plus a whole number of months, clamped to short
 * months, and is computed from the anchor, never from the previous boundary. So a Jan 31
 * anchor gives Feb 28 (29 in leap years), Mar 31, Apr 30, May 31 instead of staying on the
 * 28th after February. The end is the first boundary after `start`. When `start` is not itself
 * a boundary (for example after BILLING_PERIOD changed from days to monthly), that period is
 * shorter than a month.
 */
export function periodEnd(start: Date, period: string, anchor: Date): Date {
  const days = /^(\d+)d$/.exec(period);
  if (days) return new Date(start.getTime() + Number(days[1]) * 86_400_000);

  // Each month contains exactly one boundary, so the first one after `start` is in the month
  // of `start` or in the next month.
  const months =
    (start.getUTCFullYear() - anchor.getUTCFullYear()) * 12 +
    (start.getUTCMonth() - anchor.getUTCMonth());
  const boundary = addMonthsClamped(anchor, months);
  return boundary > start ? boundary : addMonthsClamped(anchor, months + 1);
}

/** Values of the period columns of a `users` row whose period starts at `start`, end included. */
export function periodColumns(start: Date, anchor: Date, billingPeriod: string) {
  return {
    periodStartedAt: start,
    periodAnchorAt: anchor,
    periodEndsAt: periodEnd(start, billingPeriod, anchor),
    periodEndBillingPeriod: billingPeriod,
  };
}

/**
 * Returns when the user's current period ends under `billingPeriod`: the stored end when it
 * was computed for that setting, else the end computed from the start and anchor, which is
 * the end the rollover job stores on its next run.
 */
export function currentPeriodEnd(
  user: { periodStartedAt: Date; periodAnchorAt: Date; periodEndsAt: Date; periodEndBillingPeriod: string },
  billingPeriod: string,
): Date {
  if (user.periodEndBillingPeriod === billingPeriod) return user.periodEndsAt;
  return periodEnd(user.periodStartedAt, billingPeriod, user.periodAnchorAt);
}
