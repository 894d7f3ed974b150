/** A mistake in the command line, printed without a stack trace. The exit status is 2. */
export class CommandError extends Error {
  override name = 'CommandError';
}
