import { eq } from 'drizzle-orm';
import type { AppContext } from '../context.ts';
import type { Database } from '../db/client.ts';
import { installations } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import type { GitHubApp } from '../github/app.ts';
import type { Logger } from '../logger.ts';
import { listShort, pickForm } from '../text/plural.ts';
import { ApplyRejectedError } from './apply-rejected-error.ts';

/** Folder of GitHub Actions workflow files, from the repository root. */
const workflowFolder = '.github/workflows/';

/**
 * Returns the paths of GitHub Actions workflow files among `paths`. GitHub rejects a GitHub
 * App's commit that creates or updates a file in `.github/workflows/` unless the app has the
 * Workflows permission ("refusing to allow a GitHub App to create or update workflow … without
 * `workflows` permission"), which the app permissions that README.md lists leave out. So such
 * a file is committed only for an installation whose token has Workflows: write (see
 * readWorkflowsPermission). Otherwise a preview with one is applied as suggestions by default,
 * and mode `commit` is rejected.
 */
export function workflowFilesOf(paths: readonly string[]): string[] {
  return paths.filter((path) => path.startsWith(workflowFolder));
}

/**
 * Reads the Workflows permission of installation `installationId` from its access token, the
 * `permissions` of GitHub's access token response. Returns `write`, `read`, or null when the
 * token has none. After a `new_permissions_accepted` or `unsuspend` event the token is renewed
 * once in each process (see GitHubApp.installationPermissions), so a grant takes effect
 * without a restart.
 */
export async function readWorkflowsPermission(
  db: Database,
  github: GitHubApp,
  installationId: number,
): Promise<string | null> {
  const [installation] = await db
    .select({ permissionsChangedAt: installations.permissionsChangedAt })
    .from(installations)
    .where(eq(installations.id, installationId));
  const permissions = await github.installationPermissions(
    installationId,
    installation?.permissionsChangedAt ?? null,
  );
  return permissions.workflows ?? null;
}

/**
 * Reads the Workflows permission as readWorkflowsPermission does, for the check before an
 * apply's claim. Returns undefined without GitHub App credentials or when the read fails. A
 * failure is logged and left to the read under the claim, which ends the apply as other
 * GitHub errors do, such as a rate limit that queues an apply job.
 */
export async function readWorkflowsPermissionBeforeClaim(
  context: AppContext,
  installationId: number,
  logger: Logger,
): Promise<string | null | undefined> {
  if (!context.github) return undefined;
  try {
    return await readWorkflowsPermission(context.db, context.github, installationId);
  } catch (error) {
    logger.warn(
      { event: 'apply.workflows_permission_unread', installationId, err: toSafeError(error) },
      "reading the Workflows permission of the installation's token failed before the claim, " +
        'so the apply reads it again after the claim',
    );
    return undefined;
  }
}

/**
 * Builds the rejection of mode `commit` for a patch request that changes `workflowPaths`, for
 * an installation whose token has the Workflows permission `permission` (null for none).
 */
export function workflowFilesRejection(
  workflowPaths: string[],
  permission: string | null,
): ApplyRejectedError {
  const kind = pickForm(
    workflowPaths.length,
    'is a GitHub Actions workflow file',
    'are GitHub Actions workflow files',
  );
  const granted = permission === null ? 'no Workflows permission' : `Workflows: ${permission}`;
  return new ApplyRejectedError(
    'bad_request',
    `Invalid mode "commit": ${listShort(workflowPaths)} ${kind}, and GitHub accepts a GitHub ` +
      `App's commit to ${workflowFolder} only with the Workflows permission set to write, but ` +
      `the installation's access token has ${granted}. Nothing was committed. Use mode ` +
      '"suggestions", the default for such a preview, to post the fixes as a review, or give ' +
      'the GitHub App the repository permission Workflows: read and write and have the ' +
      "installation's owner accept it.",
    { workflowFiles: workflowPaths, workflowsPermission: permission },
    'apply.workflows_permission_missing',
  );
}
