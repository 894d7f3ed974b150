/** A mistake in the command line; printed without a stack trace, exit status 2. */
export class CommandError extends Error {
  override name = 'CommandError';
}
