import { eq } from 'drizzle-orm';
import { Hono, type Context } from 'hono';
import {
  createPatchRequest,
  findActivePatchRequest,
} from '../../autofix/create-patch-request.ts';
import { maxPatchRequestFindings } from '../../autofix/patch-request-limit.ts';
import {
  describeSelectionOverAllowance,
  estimateFileCallParts,
  estimateFileCalls,
  findSelectionOverAllowance,
  loadPreviewPayment,
  pickDefaultSelection,
} from '../../autofix/preview-budget.ts';
import type { AppContext } from '../../context.ts';
import { patchRequests, type prRuns, type RunStatus } from '../../db/schema/index.ts';
import { listRunFindings } from '../../runs/run-findings.ts';
import { runNotCompletedMessage } from '../../runs/run-not-completed.ts';
import { pullRequestClosedError } from '../../runs/pull-request-closed.ts';
import {
  findNewestRunLink,
  findRunInstallation,
  findVisibleRun,
  isUuid,
} from '../../runs/visible-runs.ts';
import { formatNumber, listShort, pickForm } from '../../text/plural.ts';
import { quoteValue } from '../../text/quote-value.ts';
import {
  AppError,
  fromInstallationUnavailable,
  fromNoProvider,
  fromPlatformKeyRejected,
  fromPullRequestClosed,
  notFound,
} from '../errors.ts';
import { FormFieldError, readOptionalTextField, readTextValues } from '../session/form-body.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import { EarlierPreviews } from '../views/components/earlier-previews.tsx';
import { PatchProgress } from '../views/components/patch-progress.tsx';
import { RunPage } from '../views/run.tsx';
import { loadEarlierPreviews, parsePreviewsQuery } from './earlier-previews.ts';

/** Builds the message of the 400 for a "Preview fix" with more findings than a preview takes. */
function tooManyFindingsMessage(checked: number): string {
  const limit = formatNumber(maxPatchRequestFindings);
  return (
    `${formatNumber(checked)} findings are checked, but a preview takes at most ${limit}. ` +
    `Uncheck ${formatNumber(checked - maxPatchRequestFindings)} of them and press "Preview fix" ` +
    'again, and preview the others in another preview.'
  );
}

/** Builds the 409 for "Preview fix" on a run that is not completed. */
function runNotCompleted(status: RunStatus): AppError {
  return new AppError('conflict', runNotCompletedMessage('This run', status));
}

/** `GET /runs/:runId` and `POST /runs/:runId/patch-requests` ("Preview fix"). */
export function runPages(context: AppContext): Hono<{ Variables: PageVariables }> {
  const app = new Hono<{ Variables: PageVariables }>();
  app.use('/runs/*', requirePageSession(context));

  /**
   * Renders the run page. `selection` is a rejected "Preview fix": the findings checked in it,
   * which stay checked, and the reason, shown under the form. Otherwise the findings that fit
   * the allowance are checked.
   */
  async function renderRunPage(
    c: Context<{ Variables: PageVariables }>,
    run: typeof prRuns.$inferSelect,
    options: { listAll: boolean; selection?: { findingIds: readonly string[]; error: string } },
    status: 200 | 400 | 409 | 503 = 200,
  ) {
    const { listAll, selection } = options;
    const installation = await findRunInstallation(context.db, run.installationId);
    const rows = await listRunFindings(context.db, run.id);
    const previews = await loadEarlierPreviews(context, { userId: c.var.user.id, runId: run.id, listAll });
    const payment = await loadPreviewPayment(context, c.var.user.id);
    const calls = estimateFileCalls(rows);
    const parts = estimateFileCallParts(rows);
    const runFindingIds = new Set(rows.map((row) => row.id));
    const { findingIds: checkedFindingIds, overLimit } = selection
      ? { findingIds: new Set(selection.findingIds.filter((id) => runFindingIds.has(id))), overLimit: 0 }
      : pickDefaultSelection(payment, rows);
    const checkedCalls = estimateFileCalls(rows.filter((row) => checkedFindingIds.has(row.id)));
    const newestRun =
      run.status === 'superseded' ? await findNewestRunLink(context.db, c.var.user.id, run) : null;
    return c.html(
      <RunPage
        session={c.var.session}
        run={run}
        installation={installation}
        findings={rows}
        previews={previews}
        budget={{ payment, calls, parts, checkedFindingIds, checkedCalls, findingCount: rows.length, overLimit }}
        newestRun={newestRun}
        selectionError={selection?.error}
      />,
      status,
    );
  }

  app.get('/runs/:runId', async (c) => {
    const runId = c.req.param('runId');
    const listAll = parsePreviewsQuery(c.req.query('previews'));
    const run = await findVisibleRun(context.db, c.var.user.id, runId);
    if (!run) throw notFound('Run', runId);
    return renderRunPage(c, run, { listAll });
  });

  app.post('/runs/:runId/patch-requests', async (c) => {
    const runId = c.req.param('runId');
    const run = await findVisibleRun(context.db, c.var.user.id, runId);
    if (!run) throw notFound('Run', runId);

    const body = await c.req.parseBody({ all: true });
    let findingIds: string[] = [];
    // A selection that cannot be previewed goes where the progress would: htmx swaps the error
    // in under the form, and a page load gets the run page with the selection kept. So does a
    // run that takes no previews, such as one of a closed pull request, whose page has a
    // notice that explains why.
    const rejectSelection = (error: AppError) => {
      if (c.req.header('hx-request')) throw error;
      // A rejected platform key and a missing provider keep their 503, because neither is about
      // the selection.
      const status = error.status === 409 || error.status === 503 ? error.status : 400;
      return renderRunPage(c, run, { listAll: false, selection: { findingIds, error: error.message } }, status);
    };
    let listAll: boolean;
    try {
      // A file part gets 400, because dropping it would preview fewer findings than were sent.
      // The ids are lower-cased like those PostgreSQL returns, which createPatchRequest compares
      // as strings.
      const retry = 'reload the run page and press "Preview fix" again.';
      findingIds = readTextValues(body, 'findingIds', retry).map((value) => value.toLowerCase());
      listAll = readOptionalTextField(body, 'previews', retry) === 'all';
    } catch (error) {
      if (!(error instanceof FormFieldError)) throw error;
      return rejectSelection(error);
    }
    if (findingIds.length === 0) {
      // Reached without JavaScript, because public/app.js disables the button then.
      return rejectSelection(
        new AppError(
          'bad_request',
          'No finding is checked, so there is nothing to preview. Check at least one finding ' +
            'and press "Preview fix" again.',
        ),
      );
    }
    if (findingIds.length > maxPatchRequestFindings) {
      return rejectSelection(new AppError('bad_request', tooManyFindingsMessage(findingIds.length)));
    }
    const invalid = findingIds.filter((id) => !isUuid(id));
    if (invalid.length > 0) {
      return rejectSelection(
        new AppError('bad_request', `Invalid finding id ${quoteValue(invalid[0], 80)}: reload the run page.`),
      );
    }
    const closed = pullRequestClosedError(run);
    if (closed) return rejectSelection(fromPullRequestClosed(closed));
    if (run.status !== 'completed') return rejectSelection(runNotCompleted(run.status));

    // Shows the patch request for these findings, new or already queued or running. htmx gets
    // its progress, and the run page's "Earlier previews" list out of band, which now has it.
    const respond = async (id: string) => {
      if (!c.req.header('hx-request')) return c.redirect(`/patch-requests/${id}`, 303);
      const request = await context.db.query.patchRequests.findFirst({
        where: eq(patchRequests.id, id),
      });
      const previews = await loadEarlierPreviews(context, { userId: c.var.user.id, runId: run.id, listAll });
      return c.html(
        <>
          <PatchProgress request={request!} listAll={listAll} />
          <EarlierPreviews runId={run.id} view={previews} oob />
        </>,
      );
    };
    const logReused = (id: string) =>
      context.logger.info(
        {
          event: 'patch_request.reused',
          requestId: c.get('requestId'),
          patchRequestId: id,
          runId: run.id,
          userId: c.var.user.id,
        },
        'returned the patch request already queued or running for these findings',
      );

    // A second submit of the same selection, such as a double click without JavaScript, shows
    // the preview already under way. Checked before the allowance, because that preview's own
    // holds would otherwise make the repeat look over the allowance. createPatchRequest checks
    // again under the run's lock.
    const active = await findActivePatchRequest(context.db, {
      runId: run.id,
      userId: c.var.user.id,
      findingIds,
    });
    if (active) {
      logReused(active);
      return respond(active);
    }

    // The form checks only the files that fit, so this rejects a selection extended by hand.
    const payment = await loadPreviewPayment(context, c.var.user.id);
    const rejected = fromNoProvider(payment) ?? fromPlatformKeyRejected(payment);
    if (rejected) return rejectSelection(rejected);
    const over = await findSelectionOverAllowance(context.db, payment, { runId: run.id, findingIds });
    if (over) {
      return rejectSelection(
        new AppError('conflict', describeSelectionOverAllowance(over, 'page'), {
          neededTokens: over.neededTokens,
          remainingTokens: over.allowance.remaining,
        }),
      );
    }

    const result = await createPatchRequest(context.db, context.boss, {
      runId: run.id,
      userId: c.var.user.id,
      findingIds,
    });
    if (!result.ok && result.reason === 'installation_unavailable') {
      return rejectSelection(fromInstallationUnavailable(result.error));
    }
    if (!result.ok && result.reason === 'pull_request_closed') {
      return rejectSelection(fromPullRequestClosed(result.error));
    }
    // A push that superseded the run after the check above.
    if (!result.ok && result.reason === 'run_not_completed') return rejectSelection(runNotCompleted(result.status));
    if (!result.ok) {
      const ids = result.unknownFindingIds;
      return rejectSelection(
        new AppError(
          'bad_request',
          `${pickForm(ids.length, 'Finding', 'Findings')} ${listShort(ids)} ` +
            `${pickForm(ids.length, 'is', 'are')} not part of this run; reload the run page.`,
        ),
      );
    }
    if (!result.created) {
      logReused(result.id);
      return respond(result.id);
    }
    context.logger.info(
      {
        event: 'patch_request.created',
        requestId: c.get('requestId'),
        patchRequestId: result.id,
        runId: run.id,
        userId: c.var.user.id,
        findings: findingIds.length,
      },
      'patch request queued',
    );
    return respond(result.id);
  });

  return app;
}
