import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { findApplyRetry } from '../../apply/apply-retry.ts';
import { isApplyBlockedBySupersededRun } from '../../apply/superseded-run.ts';
import { loadPreviewPayment } from '../../autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../autofix/regenerate-file.ts';
import { findNewestRunLink, isUuid } from '../../runs/visible-runs.ts';
import {
  findVisiblePatchRequest,
  listPatchFiles,
} from '../../autofix/visible-patch-requests.ts';
import type { AppContext } from '../../context.ts';
import { notFound } from '../errors.ts';
import { csrfHeaderName } from '../session/csrf.ts';
import { FormFieldError, readOptionalTextField } from '../session/form-body.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import type { ActiveSession } from '../session/session-store.ts';
import { listFixBlockers } from '../views/components/fix-blockers.tsx';
import { loadPreviewKeyUsage } from '../../autofix/preview-key-usage.ts';
import { PatchFilesPanel, type RegenerateRejection } from '../views/components/patch-files-panel.tsx';
import { EarlierPreviews } from '../views/components/earlier-previews.tsx';
import { PatchProgress } from '../views/components/patch-progress.tsx';
import { ApplyForm, ApplyResultPage, PreviewPage, type PreviewFormError } from '../views/preview.tsx';
import { describeApplyAnswer, describeApplyResult } from '../views/apply-result.ts';
import { loadEarlierPreviews, parsePreviewsQuery } from './earlier-previews.ts';
import { describeRegenerateRejection } from './regenerate-rejection.ts';

/** Sends a request through the whole application, as the browser would. */
export type FetchApp = (request: Request) => Response | Promise<Response>;

/**
 * `GET /patch-requests/:id` (the preview), its polled fragments `…/progress` and `…/files`,
 * `POST …/files/:fileId/regenerate`, and `POST …/apply` for browsers without JavaScript.
 */
export function patchRequestPages(
  context: AppContext,
  fetchApp: FetchApp,
): Hono<{ Variables: PageVariables }> {
  const app = new Hono<{ Variables: PageVariables }>();
  app.use('/patch-requests/*', requirePageSession(context));

  /** Loads the user's patch request with its run and the run's installation. */
  const load = async (userId: string, id: string) => {
    const found = await findVisiblePatchRequest(context.db, userId, id);
    if (!found) throw notFound('Patch request', id);
    return found;
  };

  /**
   * Loads the user's patch request and renders its files panel for htmx, with the Apply form
   * out of band, so the form's version and button follow the files that the panel shows.
   * `regenerateRejection` shows a rejected "Regenerate this file" next to its file.
   */
  const renderFilesPanel = async (
    session: ActiveSession,
    userId: string,
    id: string,
    regenerateRejection?: RegenerateRejection,
  ) => {
    const { request, run, installation } = await load(userId, id);
    const files = await listPatchFiles(context.db, request.id);
    const keyUsage = await loadPreviewKeyUsage(context.db, request.id, files);
    const supersededRunBlocksApply = await isApplyBlockedBySupersededRun(context.db, request, run);
    return (
      <>
        <PatchFilesPanel
          session={session}
          request={request}
          files={files}
          keyUsage={keyUsage}
          fixesBlocked={listFixBlockers(run, installation).length > 0 || run.status !== 'completed'}
          regenerateRejection={regenerateRejection}
        />
        <ApplyForm
          session={session}
          request={request}
          run={run}
          installation={installation}
          files={files}
          supersededRunBlocksApply={supersededRunBlocksApply}
          oob
        />
      </>
    );
  };

  /**
   * Renders the preview page of the user's patch request `id` as stored now. `formError` is a
   * form of the page that was rejected without JavaScript, shown above the files.
   */
  const renderPreviewPage = async (
    c: Context<{ Variables: PageVariables }>,
    id: string,
    formError?: PreviewFormError,
    status: ContentfulStatusCode = 200,
  ) => {
    const { request, run, installation } = await load(c.var.user.id, id);
    const files = await listPatchFiles(context.db, request.id);
    const keyUsage = await loadPreviewKeyUsage(context.db, request.id, files);
    const newestRun =
      run.status === 'superseded' ? await findNewestRunLink(context.db, c.var.user.id, run) : null;
    const applyRetry = await findApplyRetry(context.boss, request);
    const supersededRunBlocksApply = await isApplyBlockedBySupersededRun(context.db, request, run);
    return c.html(
      <PreviewPage
        session={c.var.session}
        request={request}
        run={run}
        installation={installation}
        files={files}
        keyUsage={keyUsage}
        newestRun={newestRun}
        applyRetry={applyRetry}
        supersededRunBlocksApply={supersededRunBlocksApply}
        formError={formError}
      />,
      status,
    );
  };

  app.get('/patch-requests/:id', (c) => renderPreviewPage(c, c.req.param('id')));

  // Only the run page polls the progress, so the fragment carries that page's "Earlier
  // previews" list out of band, with the preview's new status in it.
  app.get('/patch-requests/:id/progress', async (c) => {
    const page = pageOfFragment(c.req.param('id'), c.req.header('hx-request'));
    if (page) return c.redirect(page, 303);
    const listAll = parsePreviewsQuery(c.req.query('previews'));
    const { request, run } = await load(c.var.user.id, c.req.param('id'));
    const previews = await loadEarlierPreviews(context, { userId: c.var.user.id, runId: run.id, listAll });
    return c.html(
      <>
        <PatchProgress request={request} listAll={listAll} />
        <EarlierPreviews runId={run.id} view={previews} oob />
      </>,
    );
  });

  app.get('/patch-requests/:id/files', async (c) => {
    const page = pageOfFragment(c.req.param('id'), c.req.header('hx-request'));
    if (page) return c.redirect(page, 303);
    return c.html(await renderFilesPanel(c.var.session, c.var.user.id, c.req.param('id')));
  });

  app.post('/patch-requests/:id/files/:fileId/regenerate', async (c) => {
    const id = c.req.param('id');
    const fileId = c.req.param('fileId');
    const result = await regeneratePatchFile(context.db, context.boss, {
      userId: c.var.user.id,
      patchRequestId: id,
      fileId,
      payment: await loadPreviewPayment(context, c.var.user.id),
    });
    if (!result.ok) {
      const error = await describeRegenerateRejection(result, fileId, async () => {
        const { request } = await load(c.var.user.id, id);
        return request.error;
      });
      // Other errors, such as 404, get the error fragment, which htmx swaps in next to the file.
      if (error.status !== 409) throw error;
      // Without JavaScript a 409 shows the preview page again, as it is now, with the message
      // above the files. htmx gets the files panel as it is now, with the message next to the
      // file, because the rejection may come from a change that hides the buttons, such as a
      // cancel of the preview.
      if (!c.req.header('hx-request')) return renderPreviewPage(c, id, { message: error.message }, 409);
      replaceFilesPanel(c);
      return c.html(
        await renderFilesPanel(c.var.session, c.var.user.id, id, { fileId, message: error.message }),
        409,
      );
    }
    context.logger.info(
      {
        event: 'patch_file.regenerate_queued',
        requestId: c.get('requestId'),
        patchRequestId: id,
        fileId,
        generation: result.generation,
        userId: c.var.user.id,
        ...(result.cancelledApplyJobId ? { cancelledApplyJobId: result.cancelledApplyJobId } : {}),
      },
      result.cancelledApplyJobId
        ? 'file regeneration queued; the waiting apply job was cancelled'
        : 'file regeneration queued',
    );
    if (!c.req.header('hx-request')) return c.redirect(`/patch-requests/${id}`, 303);
    replaceFilesPanel(c);
    return c.html(await renderFilesPanel(c.var.session, c.var.user.id, id));
  });

  app.post('/patch-requests/:id/apply', async (c) => {
    const { request } = await load(c.var.user.id, c.req.param('id'));
    // The version of the files that the page showed. A form without it applies as the API does
    // without one, and a malformed one gets the API's 400. A file part or a repeated field gets
    // 400 here, because forwarding neither would apply without the check that the form asked for.
    const form = await c.req.parseBody({ all: true });
    let previewVersion: string | undefined;
    try {
      previewVersion = readOptionalTextField(form, 'previewVersion', 'reload the preview and press Apply again.');
    } catch (error) {
      if (!(error instanceof FormFieldError)) throw error;
      return renderPreviewPage(c, request.id, { message: error.message }, 400);
    }
    const seen = previewVersion === undefined ? {} : { previewVersion };
    const url = new URL(`/api/patch-requests/${request.id}/apply`, c.req.url);
    const response = await fetchApp(
      new Request(url, {
        method: 'POST',
        headers: {
          accept: 'application/json',
          'content-type': 'application/json',
          cookie: c.req.header('cookie') ?? '',
          [csrfHeaderName]: c.var.session.csrfToken,
        },
        body: JSON.stringify(seen),
      }),
    );
    const text = await response.text();
    let body = text;
    let data: unknown = null;
    try {
      data = JSON.parse(text);
      body = JSON.stringify(data, null, 2);
    } catch {
      // Not JSON: show the text as it came.
    }
    context.logger.info(
      {
        event: 'patch_request.apply_forwarded',
        requestId: c.get('requestId'),
        patchRequestId: request.id,
        status: response.status,
        userId: c.var.user.id,
      },
      'apply sent to the API',
    );
    // Both pages pass the API's status on, so a 404 from a missing endpoint stays a 404.
    const status = response.status as ContentfulStatusCode;
    const answer = describeApplyAnswer(status, describeApplyResult(status, data));
    // A rejected apply, such as on a closed pull request or a superseded run, shows the preview
    // page again, as it is now, with the notices that explain why Apply is disabled and what to
    // do next.
    if (status >= 400 && status < 500) {
      return renderPreviewPage(c, request.id, { message: answer, response: body }, status);
    }
    return c.html(
      <ApplyResultPage session={c.var.session} request={request} status={status} answer={answer} body={body} />,
      status,
    );
  });

  return app;
}

/**
 * Makes htmx swap the response in place of the whole files panel. "Regenerate this file" targets
 * the element next to its file, where an error fragment belongs.
 */
function replaceFilesPanel(c: Context): void {
  c.header('HX-Retarget', '#patch-files');
  c.header('HX-Reswap', 'outerHTML');
}

/**
 * Returns the preview page that a browser should see in place of one of its fragments, when
 * the request does not come from htmx, or null to serve the fragment. An id that is not a UUID
 * gets no page, so the fragment route returns 404 for it as the page does.
 */
function pageOfFragment(id: string, htmxHeader: string | undefined): string | null {
  if (htmxHeader !== undefined || !isUuid(id)) return null;
  return `/patch-requests/${id}`;
}
