import type { RunStatus } from '../db/schema/index.ts';
import { describeRunListing, type OtherInstallationRun } from './visible-runs.ts';

/**
 * Builds the message for a fix request on a run that is not completed. `subject` names the run
 * as the caller does ("Run ID" in the API, "This run" on its page). A failed or cancelled run
 * has no findings and gets none by waiting, so its message gives the steps to analyze it again.
 */
export function runNotCompletedMessage(subject: string, status: RunStatus): string {
  if (status === 'superseded') {
    return `${subject} is superseded by a newer commit; request fixes on the newest run.`;
  }
  if (status === 'failed' || status === 'cancelled') {
    return (
      `${subject} is ${status}, so it has no findings to fix; push a commit or redeliver ` +
      'the pull_request event to analyze the pull request again.'
    );
  }
  return `${subject} is ${status}; wait until its analysis has completed.`;
}

/**
 * Builds the API's message for a fix request on run `runId`, which a newer commit superseded.
 * It names `newest`, the newest run of the pull request that is not superseded (see
 * findNewestRun). Without one, it names `otherInstallation`, the installation of a newer run
 * that another user owns (see findNewestRunOfOtherOwner). Without either, the newer commit has
 * no run yet, for example while its installation is suspended, and the superseded run's
 * `error` gives the reason.
 */
export function supersededRunMessage(
  runId: string,
  newest: { id: string; status: RunStatus } | null,
  otherInstallation: OtherInstallationRun | null = null,
): string {
  const subject = `Run ${runId} is superseded by a newer commit`;
  if (newest === null && otherInstallation !== null) {
    return (
      `${subject} that GitHub sent for installation ${otherInstallation.installationId} on ` +
      `account ${otherInstallation.accountLogin}, which you do not own, as after the repository ` +
      'moved to another account or the app was installed again. ' +
      describeRunListing('its run', otherInstallation.hasOwner)
    );
  }
  if (newest === null) {
    return (
      `${subject} that has no run yet; the run's \`error\` in GET /api/runs/${runId} says why. ` +
      'Request fixes on the run of that commit once GET /api/runs lists it.'
    );
  }
  if (newest.status === 'queued' || newest.status === 'analyzing') {
    return (
      `${subject}, whose run ${newest.id} is being analyzed; request fixes on run ` +
      `${newest.id} once it has completed.`
    );
  }
  if (newest.status === 'completed') {
    return `${subject}; request fixes on the newest run, ${newest.id}.`;
  }
  return `${subject}; the newest run, ${newest.id}, is ${newest.status}.`;
}
