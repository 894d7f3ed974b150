import type { Child, FC } from 'hono/jsx';
import type { prRuns } from '../../../db/schema/index.ts';
import { pullRequestClosedError } from '../../../runs/pull-request-closed.ts';
import {
  describeRunListing,
  installationState,
  type NewestRunLink,
  type RunInstallation,
} from '../../../runs/visible-runs.ts';
import { BlockedBadge, PullRequestClosedBadge } from './status-badge.tsx';
import { formatUtc } from './time.tsx';

type Run = typeof prRuns.$inferSelect;

/**
 * A condition under which the server rejects requesting, regenerating and applying fixes for a
 * run, with the message that explains how to clear it.
 */
export interface FixBlocker {
  badge: Child;
  /** Class of the notice that shows the message. */
  noticeClass: string;
  message: string;
}

/**
 * Lists why fixes for the run are blocked: a closed pull request, a suspended installation or
 * an uninstalled app. An empty list means the fix buttons stay enabled.
 */
export function listFixBlockers(run: Run, installation: RunInstallation | null): FixBlocker[] {
  const blockers: FixBlocker[] = [];
  const closed = pullRequestClosedError(run);
  if (closed) {
    blockers.push({
      badge: <PullRequestClosedBadge closedAt={closed.closedAt} />,
      noticeClass: 'pull-request-closed',
      message: closed.message,
    });
  }
  if (installation) {
    const blocker = installationBlocker(installation);
    if (blocker) blockers.push(blocker);
  }
  return blockers;
}

/** Returns the blocker of an uninstalled app or else of a suspended installation, or null. */
function installationBlocker(installation: RunInstallation): FixBlocker | null {
  const account = installation.accountLogin;
  const reason = installationState(installation);
  if (reason === 'active') return null;
  const markedAt = reason === 'uninstalled' ? installation.deletedAt! : installation.suspendedAt!;
  const { label, message } = {
    uninstalled: {
      label: 'app uninstalled',
      message:
        `The GitHub App was uninstalled from ${account}. Install it on ${account} again on ` +
        'GitHub to request or apply fixes.',
    },
    suspended: {
      label: 'installation suspended',
      message:
        `The GitHub App installation on ${account} is suspended. An owner of ${account} must ` +
        'unsuspend it in the GitHub App settings on GitHub to request or apply fixes.',
    },
  }[reason];
  return {
    badge: (
      <BlockedBadge kind={reason} label={label} title={`Marked ${reason} at ${formatUtc(markedAt)}`} />
    ),
    noticeClass: `installation-${reason}`,
    message,
  };
}

/** The blockers' labels, each followed by a space, for the page's meta line. */
export const FixBlockerBadges: FC<{ blockers: FixBlocker[] }> = ({ blockers }) => (
  <>
    {blockers.map((blocker) => (
      <>
        {blocker.badge}{' '}
      </>
    ))}
  </>
);

/** One notice per blocker with its message. */
export const FixBlockerNotices: FC<{ blockers: FixBlocker[] }> = ({ blockers }) => (
  <>
    {blockers.map((blocker) => (
      <p class={`notice ${blocker.noticeClass}`}>{blocker.message}</p>
    ))}
  </>
);

/**
 * The notice on a run that a newer commit superseded, which takes no new previews and whose
 * previews cannot be applied. It links the newest run that the user can open, or names the
 * installation of a newer run that another user owns. Without either, the newer commit has no
 * run yet, and the run's error gives the reason.
 */
export const SupersededRunNotice: FC<{ subject: 'run' | 'preview'; newestRun: NewestRunLink }> = ({
  subject,
  newestRun,
}) => {
  const lead =
    subject === 'preview'
      ? "The pull request has newer commits than this preview's run, so the preview can no " +
        'longer be applied.'
      : 'The pull request has newer commits than this run, so it takes no new previews.';
  if (newestRun?.kind === 'other_installation') {
    return (
      <p class="notice run-superseded">
        {`${lead} GitHub sent them for installation ${newestRun.installationId} on account ` +
          `${newestRun.accountLogin}, which you do not own, as after the repository moved to ` +
          'another account or the app was installed again. ' +
          describeRunListing('their runs', newestRun.hasOwner)}
      </p>
    );
  }
  const newest =
    newestRun?.kind === 'run' ? (
      <a href={`/runs/${newestRun.id}`}>the newest run</a>
    ) : (
      "the newest commit's run once the home page lists it"
    );
  return (
    <p class="notice run-superseded">
      {`${lead} Request a preview on `}
      {newest}.
    </p>
  );
};
