import { asc, eq } from 'drizzle-orm';
import { worstSeverity } from '../analysis/analyze.ts';
import type { AppContext } from '../context.ts';
import { findings, prRuns } from '../db/schema/index.ts';
import { isNotFound } from '../github/request-errors.ts';
import { parseGitHubResponse } from '../github/github-response.ts';
import { requireActiveInstallation } from '../github/installation-unavailable.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { splitRepository } from '../github/repository-name.ts';
import type { Logger } from '../logger.ts';
import { withSessionLock } from '../runs/run-lock.ts';
import { checkConclusion } from './check-conclusion.ts';
import { checkRunSchemas } from './check-run-response.ts';
import { checkRunExternalId, checkRunUrl, runIdOfExternalId } from './publish-check-run.ts';
import { fixPressText, readPressedAt, type FixPressNotice } from './fix-press-notice.ts';
import {
  findStaleNoticeReason,
  type NoticeJob,
  type StaleNotice,
} from './fix-press-notice-state.ts';
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
  /**
   * Defers the notice until the run's report stores a check run. It is called under the
   * report's lock, with the run as read there, when the run names no check run. Without it,
   * such a notice is skipped.
   */
  deferUntilReported?: (run: Run) => Promise<FixPressNoticeOutcome>;
}

type Run = typeof prRuns.$inferSelect;

export type FixPressNoticeOutcome =
  /**
   * `newerCheckRunId`: the run's newest check run, which an `earlier_analysis` notice links to.
   * `reportFailed`: the notice went on a check run that the run's failed report did not store.
   */
  | { status: 'updated'; newerCheckRunId?: number; reportFailed?: true }
  | { status: 'skipped'; reason: string; newerCheckRunId?: number }
  /** The run changed while the update was sent, so the earlier output was written back. */
  | { status: 'reverted'; reason: string }
  /**
   * The pressed check run is no longer the run's, because the run was analyzed again and
   * reported, so the notice written points to the run's newer check run instead.
   */
  | { status: 'redirected'; reason: string; newerCheckRunId: number }
  /**
   * The run names no check run yet, and job `nextJobId` writes the notice once it does. The id
   * is null only when pg-boss queued no job.
   */
  | { status: 'deferred'; reason: string; nextJobId: string | null };

/** The notice of a press on the check run of an earlier analysis of the run. */
const earlierAnalysisNotice: FixPressNotice = { kind: 'earlier_analysis' };

/** The `output` of a check run update. */
interface CheckRunOutput {
  title: string;
  summary: string;
  text?: string;
}

/**
 * Tells whether a check run's external id names an analysis of `run` other than its newest,
 * whose check run the report creates or has created.
 */
function isEarlierCheckRunOf(run: Run, externalId: string | null): boolean {
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
 *
 * The run may have replaced the pressed check run since, because it was analyzed again and its
 * report posted a new check run. The press then gets the notice of a press on an earlier
 * analysis, which links to the new check run. That holds also when the report posts it while
 * this job waits for the report's lock.
 *
 * GitHub shows the button as soon as the report creates the check run, before the report
 * stores its id on the run. A run that names no check run is therefore read again under the
 * report's lock, after the report attempt that holds it has stored its check run. When the
 * run's report failed for good without storing it, the notice goes on the pressed check run
 * once its external id shows that it is the check run of the run's analysis. The notice then
 * adds that the report failed. When the run still names none otherwise,
 * `input.deferUntilReported` decides whether a later job writes the notice.
 */
export async function publishFixPressNotice(
  context: AppContext,
  input: FixPressNoticeInput,
  logger: Logger,
): Promise<FixPressNoticeOutcome> {
  let run = await context.db.query.prRuns.findFirst({ where: eq(prRuns.id, input.runId) });
  if (!run) return { status: 'skipped', reason: 'run no longer exists' };
  let notice = input.notice;
  let reportFailed = false;
  if (notice.kind !== 'earlier_analysis' && run.checkRunId === null) {
    const stored = await readStoredCheckRun(context, input);
    if ('status' in stored) return stored;
    run = stored.run;
    reportFailed = stored.reportFailed;
  }
  let redirectReason: string | null = null;
  const runNamesAnother = !reportFailed && run.checkRunId !== input.checkRunId;
  if (notice.kind !== 'earlier_analysis' && runNamesAnother) {
    // The external id check under the lock verifies that the pressed check run is an earlier one.
    redirectReason =
      `check run ${input.checkRunId} is not the run's, whose newest check run is ` +
      `${run.checkRunId}`;
    notice = earlierAnalysisNotice;
  }
  const github = requireGitHubApp(context);
  await requireActiveInstallation(context.db, run.installationId);

  // The check run of an earlier analysis keeps its own title and summary, which the update
  // sends back unchanged.
  const output = notice.kind === 'earlier_analysis' ? null : await readRunOutput(context, run);
  const octokit = await github.installationOctokit(run.installationId);
  const [owner, repo] = splitRepository(run.repository);
  const target = { owner, repo, check_run_id: input.checkRunId };
  // The update is the same on a retry, so an invalid response fails the job and its retry
  // writes the notice again.
  const update = async (written: CheckRunOutput) => {
    const response = await octokit.rest.checks.update({ ...target, output: written });
    parseGitHubResponse(checkRunSchemas.written, 'PATCH', response);
  };
  const textOf = (shownNotice: FixPressNotice, newerCheckRunId: number | null): string => {
    const newerCheckRunUrl =
      newerCheckRunId === null
        ? undefined
        : checkRunUrl(context.config.GITHUB_URL, run, newerCheckRunId);
    return fixPressText({
      ...input,
      notice: shownNotice,
      publicUrl: context.config.PUBLIC_URL,
      newerCheckRunUrl,
      // The note is about the pressed check run, not the newer one that a redirect points to.
      reportFailed: reportFailed && shownNotice.kind !== 'earlier_analysis',
    });
  };

  // Notices of two presses could otherwise both read the text before either writes it. The
  // report's lock also keeps a notice out from between the report's annotation updates. A
  // report attempt that resumes after a notice reads the text first and sends it with each
  // update, so the notice stays.
  return withSessionLock(context.db, checkRunLockKey(run.id), async () => {
    try {
      const data = parseGitHubResponse(
        checkRunSchemas.noticed,
        'GET',
        await octokit.rest.checks.get(target),
      );
      if (notice.kind === 'earlier_analysis' && !isEarlierCheckRunOf(run, data.external_id)) {
        return { status: 'skipped', reason: `check run ${input.checkRunId} is not the run's` };
      }
      // The run names no check run, so the external id shows that the pressed one is the
      // check run of the analysis whose report failed.
      if (reportFailed && data.external_id !== checkRunExternalId(run)) {
        const reason =
          `check run ${input.checkRunId} is not the check run of the run's analysis, whose ` +
          `report failed: ${run.reportError}`;
        return { status: 'skipped', reason };
      }
      const shownPressedAt = readPressedAt(data.output.text);
      if (shownPressedAt !== null && shownPressedAt > input.pressedAt) {
        return { status: 'skipped', reason: 'the check run shows a later press' };
      }
      // NOTE: a check run without text gets the revert without text. Whether GitHub then
      // clears the notice's text is unverified, and the fake GitHub clears it.
      const earlierOutput: CheckRunOutput = {
        title: data.output.title ?? '',
        summary: data.output.summary ?? '',
        ...(data.output.text ? { text: data.output.text } : {}),
      };
      const ownOutput = { title: earlierOutput.title, summary: earlierOutput.summary };
      let newerCheckRunId = run.checkRunId === input.checkRunId ? null : run.checkRunId;
      let written: CheckRunOutput = {
        ...(output ?? ownOutput),
        text: textOf(notice, newerCheckRunId),
      };

      // The run is read again right before the update, because the events that make the notice
      // stale cancel its job but cannot stop this handler. Holding the run's row lock over the
      // update would close the window, but the webhooks of those events lock that row, and
      // Octokit may wait a minute or more for a rate limit or retry inside one request. A
      // suspend or uninstall since the check above throws InstallationUnavailableError.
      await requireActiveInstallation(context.db, run.installationId);
      const staleBefore = await findStaleNoticeReason(
        context.db,
        { ...input, notice, reportFailed },
        run,
      );
      if (staleBefore?.kind === 'redirect') {
        // The pressed check run was the run's when the job started, so it is an earlier one.
        redirectReason = staleBefore.reason;
        newerCheckRunId = staleBefore.newerCheckRunId;
        notice = earlierAnalysisNotice;
        written = { ...ownOutput, text: textOf(notice, newerCheckRunId) };
      } else if (staleBefore !== null) {
        // A notice that already pointed to the newer check run names it in its skip too.
        const newer = staleBefore.newerCheckRunId ?? newerCheckRunId;
        return skipStale(logger, input, { ...staleBefore, newerCheckRunId: newer });
      }
      await update(written);

      // A change that committed while the update was queued in Octokit or in flight is found
      // here. The earlier output is then written back, as if the job had been cancelled in time.
      // NOTE: the stale notice stays when that second update fails or the process stops
      // before it, and a change after this read finds the notice written, as after any
      // notice job that finished before the change. The report posts a new check run under
      // the lock that this update holds, so a redirect found here is reverted like any change.
      const staleAfter = await findStaleNoticeReason(
        context.db,
        { ...input, notice, reportFailed },
        run,
      );
      if (staleAfter !== null) {
        // GitHub blocks the app's API access to a suspended or uninstalled installation (REST
        // API docs, "Suspend an app installation"), so the notice stays and the error names
        // the installation instead of a failed revert.
        await requireActiveInstallation(context.db, run.installationId);
        await update(earlierOutput);
        logger.warn(
          {
            event: 'fix_press_notice.reverted',
            checkRunId: input.checkRunId,
            reason: staleAfter.reason,
          },
          `fix press notice written back to the earlier text, because ${staleAfter.reason}`,
        );
        return { status: 'reverted', reason: staleAfter.reason };
      }
      if (redirectReason !== null && newerCheckRunId !== null) {
        return logRedirect(logger, input, { reason: redirectReason, newerCheckRunId });
      }
      if (reportFailed) return { status: 'updated', reportFailed: true };
      if (newerCheckRunId === null) return { status: 'updated' };
      return { status: 'updated', newerCheckRunId };
    } catch (error) {
      if (isNotFound(error)) return logMissing(logger, input);
      throw error;
    }
  });
}

/**
 * Reads the run under the report's lock and returns it once it names a check run, or once its
 * report failed for good (`reportFailed`). A report can fail after GitHub created the check
 * run that was pressed, and no later attempt stores it then. A run that still names none and
 * whose report has not failed gets the outcome of `input.deferUntilReported`, or a skip
 * without it.
 */
async function readStoredCheckRun(
  context: AppContext,
  input: FixPressNoticeInput,
): Promise<{ run: Run; reportFailed: boolean } | FixPressNoticeOutcome> {
  return withSessionLock(context.db, checkRunLockKey(input.runId), async () => {
    const run = await context.db.query.prRuns.findFirst({ where: eq(prRuns.id, input.runId) });
    if (!run) return { status: 'skipped', reason: 'run no longer exists' };
    if (run.checkRunId !== null) return { run, reportFailed: false };
    // A stored report error ends the report, though pg-boss may not have ended its job yet.
    if (run.status === 'completed' && run.reportError !== null) return { run, reportFailed: true };
    if (input.deferUntilReported) return input.deferUntilReported(run);
    return { status: 'skipped', reason: `check run ${input.checkRunId} is not the run's` };
  });
}

/** Builds the title and summary of the run's check run from its findings, as the report does. */
async function readRunOutput(
  context: AppContext,
  run: Run,
): Promise<{ title: string; summary: string }> {
  const rows = await context.db
    .select()
    .from(findings)
    .where(eq(findings.runId, run.id))
    .orderBy(asc(findings.path), asc(findings.startLine), asc(findings.ruleId));
  return checkRunOutput(run, rows, checkConclusion(worstSeverity(rows)));
}

/** Logs a check run that GitHub no longer has, and returns the skip. */
function logMissing(logger: Logger, input: FixPressNoticeInput): FixPressNoticeOutcome {
  logger.warn(
    { event: 'fix_press_notice.check_run_missing', checkRunId: input.checkRunId },
    'check run not found on GitHub, so the press outcome is not shown',
  );
  return { status: 'skipped', reason: `check run ${input.checkRunId} not found on GitHub` };
}

/** Logs a notice that points to the run's newer check run in place of the pressed one's. */
function logRedirect(
  logger: Logger,
  input: FixPressNoticeInput,
  redirect: { reason: string; newerCheckRunId: number },
): FixPressNoticeOutcome {
  const { reason, newerCheckRunId } = redirect;
  logger.info(
    { event: 'fix_press_notice.redirected', checkRunId: input.checkRunId, newerCheckRunId, reason },
    `fix press notice points to check run ${newerCheckRunId}, because ${reason}`,
  );
  return { status: 'redirected', reason, newerCheckRunId };
}

/** Logs why a notice that became stale while its job ran is not written, and returns that. */
function skipStale(
  logger: Logger,
  input: FixPressNoticeInput,
  stale: StaleNotice,
): FixPressNoticeOutcome {
  const { reason } = stale;
  const newer = stale.newerCheckRunId === null ? {} : { newerCheckRunId: stale.newerCheckRunId };
  logger.info(
    { event: 'fix_press_notice.stale', checkRunId: input.checkRunId, reason, ...newer },
    `fix press notice not written, because ${reason}`,
  );
  return { status: 'skipped', reason, ...newer };
}
