import { constants } from 'node:os';
import type { Logger } from '../logger.ts';

export type StopSignal = 'SIGINT' | 'SIGTERM';

/** Abort reason of a command that SIGINT or SIGTERM interrupted. */
export class InterruptedError extends Error {
  override name = 'InterruptedError';

  constructor(readonly signal: StopSignal) {
    super(`Interrupted by ${signal}.`);
  }

  /** 128 plus the signal number, as shells report a process that the signal ended: 130 or 143. */
  get exitCode(): number {
    return 128 + constants.signals[this.signal];
  }
}

/**
 * Installs SIGINT and SIGTERM handlers that pass the first signal to `onFirstSignal`. A second
 * signal logs `<scope>.forced_exit` and exits at once with status 1, for when stopping takes
 * too long. Returns a function that removes the handlers.
 */
export function handleStopSignals(
  logger: Logger,
  scope: 'service' | 'command',
  onFirstSignal: (signal: StopSignal) => void,
): () => void {
  let received = false;
  const handle = (signal: StopSignal) => {
    if (received) {
      logger.warn({ event: `${scope}.forced_exit`, signal }, 'second signal; exiting now');
      process.exit(1);
    }
    received = true;
    onFirstSignal(signal);
  };
  process.on('SIGINT', handle);
  process.on('SIGTERM', handle);
  return () => {
    process.off('SIGINT', handle);
    process.off('SIGTERM', handle);
  };
}
