/**
 * A start-up failure that the operator can fix, such as an unreachable database or a data
 * folder in use by another process. The CLI prints its message as one line, without a stack
 * trace, and exits with status 1.
 */
export class StartupError extends Error {
  override name = 'StartupError';
}
