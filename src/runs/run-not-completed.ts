import type { RunStatus } from '../db/schema/index.ts';

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
