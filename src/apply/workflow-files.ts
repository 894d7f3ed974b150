import { listShort, pickForm } from '../text/plural.ts';
import { ApplyRejectedError } from './apply-rejected-error.ts';

/** Folder of GitHub Actions workflow files, from the repository root. */
const workflowFolder = '.github/workflows/';

/**
 * Returns the paths of GitHub Actions workflow files among `paths`. GitHub rejects a GitHub
 * App's commit that creates or updates a file in `.github/workflows/` unless the app has the
 * Workflows permission ("refusing to allow a GitHub App to create or update workflow … without
 * `workflows` permission"), and the app permissions that README.md lists leave it out. So a
 * preview with such a file is applied as suggestions by default, and mode `commit` is rejected.
 * NOTE: an installation that was granted Workflows: write is treated the same, because the
 * permissions of its token are not read.
 */
export function workflowFilesOf(paths: readonly string[]): string[] {
  return paths.filter((path) => path.startsWith(workflowFolder));
}

/** Builds the rejection of mode `commit` for a patch request that changes `workflowPaths`. */
export function workflowFilesRejection(workflowPaths: string[]): ApplyRejectedError {
  const kind = pickForm(
    workflowPaths.length,
    'is a GitHub Actions workflow file',
    'are GitHub Actions workflow files',
  );
  return new ApplyRejectedError(
    'bad_request',
    `Invalid mode "commit": ${listShort(workflowPaths)} ${kind}, and GitHub accepts a GitHub ` +
      `App's commit to ${workflowFolder} only with the Workflows permission, which Fixwright's ` +
      'app does not request. Nothing was committed; use mode "suggestions", the default for ' +
      'such a preview, to post the fixes as a review.',
    { workflowFiles: workflowPaths },
  );
}
