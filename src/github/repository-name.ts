import { isDotSegment } from '../events/github-names.ts';

/**
 * Error of a stored repository name that is not a GitHub OWNER/NAME. A retry reads the same
 * name, so the work that needs it cannot succeed by trying again.
 */
export class InvalidRepositoryNameError extends Error {
  override name = 'InvalidRepositoryNameError';
  constructor(
    readonly fullName: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Splits a stored OWNER/NAME into the parameters of a GitHub request path. GitHub does not
 * allow `.` or `..` in either part, and such a name raises InvalidRepositoryNameError, because
 * its request path would resolve to another API path that gets the installation's token.
 */
export function splitRepository(fullName: string): [string, string] {
  const [owner, repo, ...rest] = fullName.split('/');
  if (!owner || !repo || rest.length > 0) {
    throw new InvalidRepositoryNameError(
      fullName,
      `Invalid repository name ${JSON.stringify(fullName)}: expected OWNER/NAME.`,
    );
  }
  if (isDotSegment(owner) || isDotSegment(repo)) {
    throw new InvalidRepositoryNameError(
      fullName,
      `Invalid repository name ${JSON.stringify(fullName)}: GitHub does not allow "." or ".." ` +
        'as OWNER or NAME, so no request is sent for it.',
    );
  }
  return [owner, repo];
}
