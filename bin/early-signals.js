// Handles SIGINT and SIGTERM from the first moment of the process until a command installs its
// own handlers, because loading the TypeScript sources through tsx takes seconds, during which
// node would otherwise end without a word. The commands release these handlers through the
// function stored under the symbol below (see releaseEarlySignalHandlers in
// src/cli/stop-signals.ts). Nothing has been started or changed before that point.
import { constants } from 'node:os';

const exitOnSignal = (signal) => {
  process.stderr.write(`Interrupted by ${signal} while Fixwright was loading; nothing was started or changed.\n`);
  process.exit(128 + constants.signals[signal]);
};

process.on('SIGINT', exitOnSignal);
process.on('SIGTERM', exitOnSignal);
process[Symbol.for('fixwright.releaseEarlySignals')] = () => {
  process.off('SIGINT', exitOnSignal);
  process.off('SIGTERM', exitOnSignal);
};
