import { and, asc, eq, isNull, or, type SQL } from 'drizzle-orm';
import { asGitHubRejection } from '../apply/github-rejection.ts';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import { safeErrorMessage } from '../errors/safe-error.ts';
import { findings, prRuns } from '../db/schema/index.ts';
import {
  describeInvalidResponse,
  failingProxyHint,
  UnexpectedGitHubAnswerError,
} from '../github/github-response.ts';
import { requireActiveInstallation } from '../github/installation-unavailable.ts';
import type { Logger } from '../logger.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { startNoticesWaitingForReport } from '../jobs/fix-press-notice-queue.ts';
import { withSessionLock } from '../runs/run-lock.ts';
import { checkRunUrl, publishCheckRun } from './publish-check-run.ts';
import { upsertSummaryComment, type SummaryCommentOutcome } from './summary-comment.ts';
import { summaryCommentBody } from './summary-markdown.ts';

export type ReportOutcome =
  | { status: 'skipped'; reason: string }
  | {
      status: 'reported';
      checkRunId: number;
      conclusion: string;
      annotations: number;
      comment: SummaryCommentOutcome;
    };

/** Names the session lock under which the run's check run is created, annotated or edited. */
export function checkRunLockKey(runId: string): string {
  return `fixwright:check-run:${runId}`;
}

/**
 * Posts the results of a completed run to GitHub: the "Fixwright" check run with annotations,
 * then the pull request's summary comment. Safe to retry: the check run is created once per
 * analysis of the run and the comment is edited in place. With `jobId`, the run is marked
 * reported only while it names that report job (or none), because a run analyzed again
 * meanwhile names its new job, whose report is still pending. Such a job posts nothing when
 * the run names another job before its check run is written.
 */
export async function reportRun(
  context: AppContext,
  runId: string,
  logger: Logger,
  options: { jobId?: string } = {},
): Promise<ReportOutcome> {
  const run = await context.db.query.prRuns.findFirst({ where: eq(prRuns.id, runId) });
  if (!run) return { status: 'skipped', reason: 'run no longer exists' };
  if (run.status !== 'completed') return { status: 'skipped', reason: `run is ${run.status}` };
  const github = requireGitHubApp(context);
  await requireActiveInstallation(context.db, run.installationId);

  const rows = await context.db
    .select()
    .from(findings)
    .where(eq(findings.runId, runId))
    .orderBy(asc(findings.path), asc(findings.startLine), asc(findings.ruleId));
  const octokit = await github.installationOctokit(run.installationId);

  // Two attempts of one report could otherwise both find no check run and both create one.
  const checkRun = await withSessionLock(context.db, checkRunLockKey(runId), async () => {
    const current = await context.db.query.prRuns.findFirst({ where: eq(prRuns.id, runId) });
    // A run analyzed again since `rows` were read names its new report job, which posts the
    // new findings. Posting the rows read here would put the earlier findings on its check run.
    if (current && !reportsRun(current, options.jobId)) return null;
    // The check run's "Details" link opens the run on the dashboard when its address is known.
    const publicUrl = context.config.PUBLIC_URL;
    const detailsUrl = publicUrl ? `${publicUrl}/runs/${run.id}` : undefined;
    // A press on the check run before its id was stored left a notice job waiting for it.
    let noticeJobIds: string[] = [];
    const onCheckRunStored = async (tx: Transaction) => {
      noticeJobIds = await startNoticesWaitingForReport(tx, context.boss, runId);
    };
    const published = await publishCheckRun(context.db, octokit, current ?? run, rows, logger, {
      appId: github.appId,
      detailsUrl,
      onCheckRunStored,
    });
    logNoticesStarted(logger, noticeJobIds, 'check_run_stored');
    return published;
  });
  if (checkRun === null) {
    logger.info(
      { event: 'report.replaced' },
      'report not posted: the run was analyzed again meanwhile, and its new report job reports it',
    );
    return { status: 'skipped', reason: 'the run was analyzed again' };
  }
  const postedCheckRunUrl = checkRunUrl(context.config.GITHUB_URL, run, checkRun.checkRunId);
  const comment = await upsertSummaryComment(
    context.db,
    octokit,
    {
      runId,
      repositoryId: run.repositoryId,
      repository: run.repository,
      prNumber: run.prNumber,
      appId: github.appId,
    },
    summaryCommentBody(run, rows, postedCheckRunUrl),
    logger,
  );

  const marked = await context.db
    .update(prRuns)
    .set({ reportedAt: new Date(), reportError: null })
    .where(and(eq(prRuns.id, runId), namesReportJob(options.jobId)))
    .returning({ id: prRuns.id });
  if (marked.length === 0) {
    logger.info(
      { event: 'report.replaced' },
      'report posted, but the run was analyzed again meanwhile; its new report job reports it',
    );
  }
  return { status: 'reported', ...checkRun, comment };
}

/**
 * Stores why the run's results could not be posted, for the API and the logs. With `jobId`, it
 * is stored only while the run names that report job (or none), as in `reportRun`. The error
 * ends the run's report, so the notice jobs that wait for it start in the same transaction
 * and end with that error instead of at their next check (see deferUntilReported).
 */
export async function recordReportError(
  context: Pick<AppContext, 'db' | 'boss'>,
  runId: string,
  error: unknown,
  logger: Logger,
  options: { jobId?: string } = {},
): Promise<void> {
  const noticeJobIds = await context.db.transaction(async (tx) => {
    const stored = await tx
      .update(prRuns)
      .set({ reportError: describeReportError(error).slice(0, 2000) })
      .where(and(eq(prRuns.id, runId), namesReportJob(options.jobId)))
      .returning({ id: prRuns.id });
    if (stored.length === 0) return [];
    return startNoticesWaitingForReport(tx, context.boss, runId);
  });
  logNoticesStarted(logger, noticeJobIds, 'report_failed');
}

/**
 * Logs the ids of the fix press notice jobs that the report started, if any, because it
 * stored its check run or failed for good.
 */
export function logNoticesStarted(
  logger: Logger,
  noticeJobIds: string[],
  reason: 'check_run_stored' | 'report_failed',
): void {
  if (noticeJobIds.length === 0) return;
  const message =
    reason === 'check_run_stored'
      ? 'started the fix press notices that waited for the check run'
      : 'started the fix press notices that waited for the report, which failed';
  logger.info({ event: 'report.fix_press_notices_started', noticeJobIds, reason }, message);
}

/**
 * Returns whether job `jobId` still reports the run: the run is completed and names that job
 * or no job. Without `jobId` only the status counts.
 */
function reportsRun(run: { status: string; reportJobId: string | null }, jobId: string | undefined): boolean {
  if (run.status !== 'completed') return false;
  return jobId === undefined || run.reportJobId === null || run.reportJobId === jobId;
}

/**
 * Builds the condition that a run names report job `jobId` or no report job, or no condition
 * without `jobId`. Runs completed before `reportJobId` existed name no job.
 */
function namesReportJob(jobId: string | undefined): SQL | undefined {
  if (jobId === undefined) return undefined;
  return or(isNull(prRuns.reportJobId), eq(prRuns.reportJobId, jobId));
}

/**
 * Describes a failed report: the request that GitHub rejected with its status and message, and
 * what to grant when the app lacks a permission, the request that got no response, or the
 * request whose response lacked or mistyped a field. Other errors keep their own message.
 */
export function describeReportError(error: unknown): string {
  if (error instanceof UnexpectedGitHubAnswerError) {
    return (
      `Posting the results to GitHub failed: ${describeInvalidResponse(error)} ` +
      `${failingProxyHint} Once it responds normally, push a commit to analyze and report the ` +
      'pull request again.'
    );
  }
  const rejection = asGitHubRejection(error);
  if (!rejection) return `Posting the results to GitHub failed: ${safeErrorMessage(error)}`;
  if (rejection.noResponse) {
    return (
      `Posting the results to GitHub failed: ${rejection.method} ${rejection.path} got no ` +
      `response: ${rejection.message}`
    );
  }
  const description =
    `Posting the results to GitHub failed: GitHub returned ${rejection.status} ` +
    `${JSON.stringify(rejection.message)} for ${rejection.method} ${rejection.path}.`;
  if (rejection.status === 403 && /not accessible by integration/i.test(rejection.message)) {
    return (
      `${description} The GitHub App lacks a permission that reporting needs. Grant Checks: ` +
      'write and Pull requests: write in the GitHub App settings, and have an owner of the ' +
      'account accept the new permissions.'
    );
  }
  return description;
}
