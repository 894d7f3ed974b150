import type { AppContext } from '../context.ts';
import { releaseExpiredReservations } from '../usage/allowance.ts';

export const sweepReservationsQueue = 'sweep-reservations';

/** Every minute; pg-boss schedules with cron precision of one minute. */
export const sweepReservationsCron = '* * * * *';

/** Releases reservations whose worker died before settling them. */
export async function handleSweepReservations(context: AppContext): Promise<void> {
  const released = await releaseExpiredReservations(context.db);
  if (released > 0) {
    context.logger.warn(
      { event: 'job.sweep_reservations.released', tokens: released },
      'released expired token reservations',
    );
  }
}
