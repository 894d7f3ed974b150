/** A mistake in the command line, printed without a stack trace. The exit status is 2. */
export class CommandError extends Error {
  override name = 'CommandError';
}

/**
 * A command that was well formed but could not do its work, such as a user that does not
 * exist. Printed without a stack trace; the exit status is 1.
 */
export class CommandFailedError extends Error {
  override name = 'CommandFailedError';
}
