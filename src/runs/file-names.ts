import type { UncheckedFileReason } from '../db/schema/index.ts';
import type { PullRequestFile } from '../github/pull-files.ts';
import type { Logger } from '../logger.ts';

/** Reason of a file that is left unchecked because its name contains a NUL character. */
export const nulNameReason = 'file name with a NUL character, shown as U+FFFD, not checked';

/** Reason of a file that is left unchecked because its name or previous name is no git path. */
export const invalidPathReason =
  'invalid file name with an empty, "." or ".." path segment, not checked';

/**
 * Tells whether `path` is a path that git can store in a tree: relative, with no empty, `.`
 * or `..` segment. Git 2.39 rejects the others ("Invalid path" from `git update-index`), so
 * GitHub should list none. A read of one would also send another request than intended,
 * because the URL parser resolves a `.` or `..` segment: a read of `..` requests the
 * repository itself.
 */
export function isGitPath(path: string): boolean {
  return path.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

/**
 * Splits off the files whose name cannot be stored or read, so that one such file does not
 * fail the findings of the others. A name that contains a NUL character, which PostgreSQL text
 * cannot store, is returned with its NUL characters replaced by U+FFFD. A name or previous name
 * that is no git path (see `isGitPath`) is returned as it is.
 */
export function setAsideUnusableNames(
  files: readonly PullRequestFile[],
  logger: Logger,
): { usable: PullRequestFile[]; unusable: UncheckedFileReason[] } {
  const usable: PullRequestFile[] = [];
  const unusable: UncheckedFileReason[] = [];
  for (const file of files) {
    if (file.filename.includes('\0')) {
      const path = file.filename.replaceAll('\0', '\uFFFD');
      unusable.push({ path, reason: nulNameReason });
      logger.warn(
        { event: 'analyze.nul_file_name', path, status: file.status },
        'GitHub listed a file whose name contains a NUL character; its added lines stay unchecked',
      );
      continue;
    }
    const previousPath = file.previousFilename;
    if (!isGitPath(file.filename) || (previousPath !== undefined && !isGitPath(previousPath))) {
      unusable.push({ path: file.filename, reason: invalidPathReason });
      logger.warn(
        {
          event: 'analyze.invalid_file_name',
          path: file.filename,
          previousPath,
          status: file.status,
        },
        'GitHub listed a file whose name is not a valid git path; its added lines stay unchecked',
      );
      continue;
    }
    usable.push(file);
  }
  return { usable, unusable };
}
