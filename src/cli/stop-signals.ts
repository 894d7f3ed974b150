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
 * Milliseconds after the first signal during which the same signal again is taken as a copy of
 * it. A Ctrl-C in a terminal reaches `npm start` and node at once, and npm forwards its copy
 * to node too, so one keypress arrives twice within milliseconds.
 */
const repeatWindowMs = 1_000;

/** Symbol under which bin/early-signals.js stores the function that removes its handlers. */
const releaseEarlySignalsKey = Symbol.for('fixwright.releaseEarlySignals');

/**
 * Removes the handlers that bin/early-signals.js installs while the program loads, which print
 * one line and exit 130 or 143. A command that installs no handlers of its own calls this
 * before it starts work, so a signal then ends it as node does by default.
 */
export function releaseEarlySignalHandlers(): void {
  const holder = process as unknown as Record<symbol, (() => void) | undefined>;
  holder[releaseEarlySignalsKey]?.();
  holder[releaseEarlySignalsKey] = undefined;
}

/**
 * Installs SIGINT and SIGTERM handlers that pass the first signal to `onFirstSignal`, in place
 * of the handlers that bin/early-signals.js installed while the program loaded. A second
 * signal logs `<scope>.forced_exit` and exits at once with status 1, for when stopping takes
 * too long. The first signal repeated within a second does not count as a second signal.
 * Returns a function that removes the handlers.
 */
export function handleStopSignals(
  logger: Logger,
  scope: 'service' | 'command',
  onFirstSignal: (signal: StopSignal) => void,
): () => void {
  let first: { signal: StopSignal; at: number } | undefined;
  const handle = (signal: StopSignal) => {
    if (first) {
      if (signal === first.signal && Date.now() - first.at < repeatWindowMs) {
        logger.debug({ event: `${scope}.signal_repeated`, signal }, 'repeated signal ignored because the stop is in progress');
        return;
      }
      logger.warn({ event: `${scope}.forced_exit`, signal }, 'second signal; exiting now');
      process.exit(1);
    }
    first = { signal, at: Date.now() };
    onFirstSignal(signal);
  };
  process.on('SIGINT', handle);
  process.on('SIGTERM', handle);
  releaseEarlySignalHandlers();
  return () => {
    process.off('SIGINT', handle);
    process.off('SIGTERM', handle);
  };
}
