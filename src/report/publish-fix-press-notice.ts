import { asc, eq } from 'drizzle-orm';
import { worstSeverity } from '../analysis/analyze.ts';
import type { AppContext } from '../context.ts';
import { findings, prRuns } from '../db/schema/index.ts';
import { isNotFound } from '../github/file-content.ts';
import { requireActiveInstallation } from '../github/installation-unavailable.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import type { Logger } from '../logger.ts';
import { splitRepository } from '../runs/analyze-run.ts';
import { withSessionLock } from '../runs/run-lock.ts';
import { checkConclusion } from './check-conclusion.ts';
import { checkRunExternalId, runIdOfExternalId } from './publish-check-run.ts';
import { fixPressText, readPressedAt, type FixPressNotice } from './fix-press-notice.ts';
import { findStaleNoticeReason, type NoticeJob } from './fix-press-notice-state.ts';
import { checkRunLockKey } from './report-run.ts';
import { checkRunOutput } from './summary-markdown.ts';

export interface FixPressNoticeInput {
  runId: string;
  checkRunId: number;
  /** Press time in milliseconds since 1970, which orders the notices of one check run. */
  pressedAt: number;
  /** Login of the user who pressed the button, as the webhook payload names it. */
  sender: string | null;
  notice: FixPressNotice;
  /** Job that publishes the notice. Once it is cancelled, the notice is not written. */
  job?: NoticeJob;
}

export type FixPressNoticeOutcome =
  | { status: 'updated' }
  | { status: 'skipped'; reason: string }
  /** The run changed while the update was sent, so the earlier output was written back. */
  | { status: 'reverted'; reason: string };

/**
 * Tells whether a check run's external id names an analysis of `run` other than its newest,
 * whose check run the report creates or has created.
 */
function isEarlierCheckRunOf(run: typeof prRuns.$inferSelect, externalId: string | null): boolean {
  return runIdOfExternalId(externalId) === run.id && externalId !== checkRunExternalId(run);
}

/**
 * Writes the outcome of a "Fix with AI" press into the `text` of the run's check run. The
 * title and summary are rebuilt from the run's findings the way the report builds them, and no
 * annotations are sent, because GitHub appends the annotations of every update. Safe to retry:
 * the update is the same each time, and a notice older than the one the check run shows is
 * skipped. A deleted check run (404) is logged and skipped. A notice that a newer commit, a
 * close or a base change made stale while it ran is not written, or is reverted when the
 * change came during the update (see `findStaleNoticeReason`). An installation suspended or
 * uninstalled before the update throws InstallationUnavailableError, and so does one suspended
 * during an update that turned stale, instead of the revert.
 */
export async function publishFixPressNotice(
  context: AppContext,
  input: FixPressNoticeInput,
  logger: Logger,
): Promise<FixPressNoticeOutcome> {
  const run = await context.db.query.prRuns.findFirst({ where: eq(prRuns.id, input.runId) });
  if (!run) return { status: 'skipped', reason: 'run no longer exists' };
  // The check run of an earlier analysis keeps its own title and summary, which the update
  // sends back unchanged.
  const earlier = input.notice.kind === 'earlier_analysis';
  if (!earlier && run.checkRunId !== input.checkRunId) {
    return { status: 'skipped', reason: `check run ${input.checkRunId} is not the run's` };
  }
  const github = requireGitHubApp(context);
  await requireActiveInstallation(context.db, run.installationId);

  let output: { title: string; summary: string } | null = null;
  if (!earlier) {
    const rows = await context.db
      .select()
      .from(findings)
      .where(eq(findings.runId, run.id))
      .orderBy(asc(findings.path), asc(findings.startLine), asc(findings.ruleId));
    output = checkRunOutput(run, rows, checkConclusion(worstSeverity(rows)));
  }
  const text = fixPressText({ ...input, publicUrl: context.config.PUBLIC_URL });
  const octokit = await github.installationOctokit(run.installationId);
  const [owner, repo] = splitRepository(run.repository);
  const target = { owner, repo, check_run_id: input.checkRunId };

  const missing = (): FixPressNoticeOutcome => {
    logger.warn(
      { event: 'fix_press_notice.check_run_missing', checkRunId: input.checkRunId },
      'check run not found on GitHub, so the press outcome is not shown',
    );
    return { status: 'skipped', reason: `check run ${input.checkRunId} not found on GitHub` };
  };

  // Notices of two presses could otherwise both read the text before either writes it. The
  // report's lock also keeps a notice out from between the report's annotation updates. A
  // report attempt that resumes after a notice reads the text first and sends it with each
  // update, so the notice stays.
  return withSessionLock(context.db, checkRunLockKey(run.id), async () => {
    try {
      const { data } = await octokit.rest.checks.get(target);
      if (earlier && !isEarlierCheckRunOf(run, data.external_id)) {
        return { status: 'skipped', reason: `check run ${input.checkRunId} is not the run's` };
      }
      const shownPressedAt = readPressedAt(data.output.text);
      if (shownPressedAt !== null && shownPressedAt > input.pressedAt) {
        return { status: 'skipped', reason: 'the check run shows a later press' };
      }
      // NOTE: a check run without text gets the revert without text. Whether GitHub then
      // clears the notice's text is unverified, and the fake GitHub clears it.
      const earlierOutput = {
        title: data.output.title ?? '',
        summary: data.output.summary ?? '',
        ...(data.output.text ? { text: data.output.text } : {}),
      };
      const { title, summary } = output ?? earlierOutput;

      // The run is read again right before the update, because the events that make the notice
      // stale cancel its job but cannot stop this handler. Holding the run's row lock over the
      // update would close the window, but the webhooks of those events lock that row, and
      // Octokit may wait a minute or more for a rate limit or retry inside one request. A
      // suspend or uninstall since the check above throws InstallationUnavailableError.
      await requireActiveInstallation(context.db, run.installationId);
      const staleBefore = await findStaleNoticeReason(context.db, input, run);
      if (staleBefore !== null) return skipStale(logger, input, staleBefore);
      await octokit.rest.checks.update({ ...target, output: { title, summary, text } });

      // A change that committed while the update was queued in Octokit or in flight is found
      // here. The earlier output is then written back, as if the job had been cancelled in time.
      // NOTE: the stale notice stays when that second update fails or the process stops
      // before it, and a change after this read finds the notice written, as after any
      // notice job that finished before the change.
      const staleAfter = await findStaleNoticeReason(context.db, input, run);
      if (staleAfter !== null) {
        // GitHub blocks the app's API access to a suspended or uninstalled installation (REST
        // API docs, "Suspend an app installation"), so the notice stays and the error names
        // the installation instead of a failed revert.
        await requireActiveInstallation(context.db, run.installationId);
        await octokit.rest.checks.update({ ...target, output: earlierOutput });
        logger.warn(
          { event: 'fix_press_notice.reverted', checkRunId: input.checkRunId, reason: staleAfter },
          `fix press notice written back to the earlier text, because ${staleAfter}`,
        );
        return { status: 'reverted', reason: staleAfter };
      }
    } catch (error) {
      if (isNotFound(error)) return missing();
      throw error;
    }
    return { status: 'updated' };
  });
}

/** Logs why a notice that became stale while its job ran is not written, and returns that. */
function skipStale(
  logger: Logger,
  input: FixPressNoticeInput,
  reason: string,
): FixPressNoticeOutcome {
  logger.info(
    { event: 'fix_press_notice.stale', checkRunId: input.checkRunId, reason },
    `fix press notice not written, because ${reason}`,
  );
  return { status: 'skipped', reason };
}
