import { and, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { installations, patchRequests, type ApplyMode } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { formatCount, listShort, pickForm } from '../text/plural.ts';
import { ApplyRejectedError } from './apply-rejected-error.ts';
import { asGitHubRejection, describeFailedRequest, type GitHubRejection } from './github-rejection.ts';
import { workflowFilesOf } from './workflow-files.ts';

/** Repository permission that a GitHub App needs to commit workflow files, as GitHub's settings name it. */
const neededPermission = 'Workflows: read and write';

/**
 * Raised when GitHub rejected a commit of workflow files because the installation lacks
 * Workflows: write, although its access token claimed it. The branch is unchanged, because
 * the rejection came before or instead of the ref update.
 */
export class WorkflowsRejectedError extends Error {
  override name = 'WorkflowsRejectedError';

  constructor(
    readonly workflowPaths: string[],
    readonly rejection: GitHubRejection,
    cause: unknown,
  ) {
    super(`GitHub rejected the commit of workflow files: ${describeFailedRequest(cause)}`, { cause });
  }
}

/** Git Data API requests of a commit, after its blobs, that GitHub may reject for the Workflows permission. */
const commitWritePaths = [
  { method: 'POST', path: /\/git\/trees$/ },
  { method: 'POST', path: /\/git\/commits$/ },
  { method: 'PATCH', path: /\/git\/refs\/heads\// },
];

/**
 * Returns WorkflowsRejectedError when `error` is GitHub's rejection of a commit of `paths` for
 * lack of the Workflows permission, or null for any other error or a commit without workflow
 * files. GitHub App users report 403 "Resource not accessible by integration" for POST
 * /git/trees once the tree has a file under `.github/workflows/`. The same 403 on the commit or
 * the ref update counts too, because GitHub accepted the blobs of the same commit, which need
 * Contents: write. A message that names the `workflows` permission, as git push's rejection
 * does, counts on any of these requests.
 * NOTE: whether GitHub checks the permission on the commit or the ref update is unverified.
 */
export function asWorkflowsRejection(
  error: unknown,
  paths: readonly string[],
): WorkflowsRejectedError | null {
  const workflowPaths = workflowFilesOf(paths);
  const rejection = asGitHubRejection(error);
  if (workflowPaths.length === 0 || !rejection || rejection.noResponse || rejection.invalidResponse) {
    return null;
  }
  const isCommitWrite = commitWritePaths.some(
    ({ method, path }) => rejection.method === method && path.test(rejection.path),
  );
  if (!isCommitWrite) return null;
  const namesPermission = /without `?workflows?`? permission/i.test(rejection.message);
  const notAccessible = rejection.status === 403 && /not accessible by integration/i.test(rejection.message);
  if (!namesPermission && !notAccessible) return null;
  return new WorkflowsRejectedError(workflowPaths, rejection, error);
}

/** An apply whose commit GitHub rejected, with its claim on the patch request. */
export interface RejectedApply {
  patchRequestId: string;
  /** PostgreSQL's text form of the claim's `applyStartedAt`. */
  claimedAt: string;
  installationId: number;
  requestedMode: ApplyMode | undefined;
  files: readonly string[];
}

/**
 * Records GitHub's rejection of an apply's commit of workflow files. It stores the time in
 * `installations.permissions_changed_at`, so every process requests a new access token before
 * it next reads the installation's Workflows permission, because no webhook reports a removed
 * permission and the cached token still claims it. For an apply in mode `commit`, it throws
 * ApplyRejectedError. Otherwise it stores the note for the apply's result as the request's
 * `appliedNote`, only while the claim is the apply's, and returns it. The apply then posts all
 * files as suggestions, as it does for a preview with workflow files without the permission.
 * A call that dies after posting leaves the note stored, and the apply that takes over its
 * claim records the note with the review that it finds.
 */
export async function handleWorkflowsRejection(
  db: Database,
  error: WorkflowsRejectedError,
  apply: RejectedApply,
  logger: Logger,
): Promise<string> {
  await db
    .update(installations)
    .set({ permissionsChangedAt: sql`now()` })
    .where(eq(installations.id, apply.installationId));
  const fallBack = apply.requestedMode !== 'commit';
  logger.warn(
    {
      event: 'apply.workflows_rejected',
      installationId: apply.installationId,
      workflowFiles: error.workflowPaths,
      github: error.rejection,
      fallback: fallBack ? 'suggestions' : 'none',
    },
    "GitHub rejected the commit of workflow files although the installation's access token " +
      'claimed Workflows: write, so the next permission read requests a new token',
  );
  const request = describeFailedRequest(error.cause);
  const kind = pickForm(
    error.workflowPaths.length,
    'is a GitHub Actions workflow file',
    'are GitHub Actions workflow files',
  );
  const reason =
    `${listShort(error.workflowPaths)} ${kind}, and GitHub accepts a GitHub App's commit to ` +
    ".github/workflows/ only with Workflows: write, which the installation's access token " +
    'claimed but GitHub no longer grants. The permission was probably removed after the token ' +
    'was issued.';
  if (!fallBack) {
    throw new ApplyRejectedError(
      'bad_request',
      `Invalid mode "commit": ${request}. ${reason} Nothing was committed. Use mode ` +
        '"suggestions" to post the fixes as a review, or give the GitHub App the repository ' +
        `permission ${neededPermission} and have the installation's owner accept it.`,
      { workflowFiles: error.workflowPaths, github: error.rejection },
      'apply.workflows_permission_rejected',
    );
  }
  const note =
    `${request}. ${reason} Nothing was committed, so the fixes of ` +
    `${formatCount(apply.files.length, 'file')} were posted as review suggestions instead. To ` +
    `commit workflow files, give the GitHub App the repository permission ${neededPermission} ` +
    "and have the installation's owner accept it.";
  // Pages and the API show `appliedNote` only once `appliedAt` is set. A claim that another call
  // took over is left to that call.
  await db
    .update(patchRequests)
    .set({ appliedNote: note })
    .where(
      and(
        eq(patchRequests.id, apply.patchRequestId),
        sql`${patchRequests.applyStartedAt} = ${apply.claimedAt}::timestamptz`,
      ),
    );
  return note;
}
