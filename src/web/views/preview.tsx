import type { FC } from 'hono/jsx';
import type { patchFiles, patchRequests, prRuns } from '../../db/schema/index.ts';
import { visibleApplyWait, type ApplyRetry } from '../../apply/apply-retry.ts';
import { shownPreviewVersion } from '../../autofix/visible-patch-requests.ts';
import type { NewestRunLink, RunInstallation } from '../../runs/visible-runs.ts';
import { invisibleCharacterNames, invisibleCharacterPattern } from '../../text/invisible-characters.ts';
import type { ActiveSession } from '../session/session-store.ts';
import {
  ApplyClosedCheckNotice,
  ApplyRetryNotice,
  ApplyUnconfirmedNotice,
  ApplyWaitNotice,
} from './components/apply-wait-notice.tsx';
import { CsrfField } from './components/csrf-field.tsx';
import { FormError } from './components/form-error.tsx';
import { MarkedText } from './components/marked-text.tsx';
import {
  FixBlockerBadges,
  FixBlockerNotices,
  listFixBlockers,
  SupersededRunNotice,
} from './components/fix-blockers.tsx';
import { PatchFilesPanel } from './components/patch-files-panel.tsx';
import type { PreviewKeyUsage } from '../../autofix/preview-key-usage.ts';
import { Time } from './components/time.tsx';
import { Layout } from './layout.tsx';

type PatchRequest = typeof patchRequests.$inferSelect;
type PatchFile = typeof patchFiles.$inferSelect;
type Run = typeof prRuns.$inferSelect;

/**
 * The rejection of a form of the preview page sent without JavaScript. The page shows it above
 * the files, where a full page load starts.
 */
export interface PreviewFormError {
  /** The reason, worded as htmx and public/app.js show it with JavaScript. */
  message: string;
  /** The body of the JSON API's response to a rejected Apply, shown under "Response". */
  response?: string;
}

/**
 * The invisible characters, for public/app.js, which marks them in the apply API's response as
 * MarkedText does on the server.
 */
const invisibleCharactersJson = JSON.stringify({
  pattern: invisibleCharacterPattern,
  names: invisibleCharacterNames,
});

/** The response body of the apply API, pretty-printed JSON or the text as it came. */
const ApplyResponseDetails: FC<{ body: string }> = ({ body }) => (
  <details>
    <summary>Response</summary>
    <pre class="json">
      <MarkedText text={body} />
    </pre>
  </details>
);

/**
 * The preview of a patch request, with every file's diff and "Apply". With JavaScript the Apply
 * button posts to the JSON API and shows its response. Without JavaScript the form posts to the
 * page route, which calls the same API. A closed pull request or an unavailable installation
 * disables Apply, hides "Regenerate this file" and shows why. So does a newer commit that
 * superseded the run, unless an earlier apply may have pushed it (`supersededRunBlocksApply`).
 */
export const PreviewPage: FC<{
  session: ActiveSession;
  request: PatchRequest;
  run: Run;
  installation: RunInstallation | null;
  files: PatchFile[];
  keyUsage: PreviewKeyUsage;
  /** The link to a superseded run's newer commits (see findNewestRunLink), or null. */
  newestRun: NewestRunLink;
  /** The failed attempt of the apply job that pg-boss retries, or null. */
  applyRetry: ApplyRetry | null;
  /** Whether the superseded run rejects an apply (see `isApplyBlockedBySupersededRun`). */
  supersededRunBlocksApply: boolean;
  formError?: PreviewFormError | undefined;
}> = ({ session, request, run, installation, files, keyUsage, newestRun, applyRetry, supersededRunBlocksApply, formError }) => {
  const applied = request.appliedAt !== null;
  const applyWait = visibleApplyWait(request, applyRetry);
  const blockers = listFixBlockers(run, installation);
  const superseded = !applied && supersededRunBlocksApply;
  return (
    <Layout title="Fix preview" session={session}>
      <p class="breadcrumbs">
        <a href="/">Home</a> / <a href={`/runs/${run.id}`}>{`${run.repository}#${run.prNumber}`}</a> /
        preview
      </p>
      <h1>Fix preview</h1>
      <p class="meta">
        <FixBlockerBadges blockers={blockers} />
        <MarkedText text={run.prTitle} /> · requested <Time date={request.createdAt} />
      </p>
      <FixBlockerNotices blockers={blockers} />
      {superseded ? <SupersededRunNotice subject="preview" newestRun={newestRun} /> : null}
      {formError ? (
        <div class="form-rejection">
          <FormError message={formError.message} />
          {formError.response === undefined ? null : <ApplyResponseDetails body={formError.response} />}
        </div>
      ) : null}

      <PatchFilesPanel
        session={session}
        request={request}
        files={files}
        fixesBlocked={blockers.length > 0 || run.status !== 'completed'}
        keyUsage={keyUsage}
      />

      <section class="card apply">
        <h2>Apply</h2>
        {applied ? (
          <p>
            {request.applyMode === 'commit' && request.appliedCommitSha
              ? `Applied as commit ${request.appliedCommitSha.slice(0, 7)} on the pull request's branch`
              : 'Applied as review suggestions on the pull request'}{' '}
            <Time date={request.appliedAt!} />.
          </p>
        ) : (
          <p class="muted">
            Commits the ready files to the pull request's branch, or posts them as review
            suggestions when the branch is in a fork.
          </p>
        )}
        {applied && request.appliedNote ? (
          <p class="warning">
            <MarkedText text={request.appliedNote} />
          </p>
        ) : null}
        {applyWait ? <ApplyWaitNotice wait={applyWait} /> : null}
        {applyRetry ? <ApplyRetryNotice retry={applyRetry} /> : null}
        {!applied && request.applyClosedCheck ? (
          <ApplyClosedCheckNotice check={request.applyClosedCheck} branch={run.headRef} />
        ) : null}
        {!applied && !request.applyClosedCheck && request.applyUnconfirmedAt && request.applyUnconfirmedMode ? (
          <ApplyUnconfirmedNotice
            mode={request.applyUnconfirmedMode}
            commitSha={request.applyUnconfirmedCommitSha}
            branch={run.headRef}
            at={request.applyUnconfirmedAt}
            jobWaits={applyWait !== null}
            closed={run.prClosedAt !== null}
          />
        ) : null}
        {!applied && request.applyError ? (
          <p class="error">
            <MarkedText text={request.applyError} />
          </p>
        ) : null}
        <ApplyForm
          session={session}
          request={request}
          run={run}
          installation={installation}
          files={files}
          supersededRunBlocksApply={supersededRunBlocksApply}
        />
        <div id="apply-result" aria-live="polite" data-invisible-characters={invisibleCharactersJson}></div>
      </section>
    </Layout>
  );
};

/**
 * Returns whether the preview page enables Apply: the preview is ready or partially ready, not
 * applied, and neither a fix blocker nor a newer commit (`supersededRunBlocksApply`) stops the
 * apply.
 */
export function canApplyPreview(
  request: PatchRequest,
  run: Run,
  installation: RunInstallation | null,
  supersededRunBlocksApply: boolean,
): boolean {
  return (
    request.appliedAt === null &&
    !supersededRunBlocksApply &&
    listFixBlockers(run, installation).length === 0 &&
    (request.status === 'ready' || request.status === 'partially_ready')
  );
}

/**
 * The Apply form. Its hidden `previewVersion` names the files and diffs that the page shows, so
 * an apply after they changed gets 409 and writes nothing. The fragments that htmx polls or
 * swaps in for the files panel send it again with `oob`, which replaces the page's form, so its
 * version and button follow the files that the panel shows.
 */
export const ApplyForm: FC<{
  session: ActiveSession;
  request: PatchRequest;
  run: Run;
  installation: RunInstallation | null;
  files: PatchFile[];
  supersededRunBlocksApply: boolean;
  oob?: boolean;
}> = ({ session, request, run, installation, files, supersededRunBlocksApply, oob }) => (
  <form
    id="apply-form"
    method="post"
    action={`/patch-requests/${request.id}/apply`}
    hx-post={`/api/patch-requests/${request.id}/apply`}
    hx-ext="json-result"
    hx-target="#apply-result"
    hx-disabled-elt="find button[type=submit]"
    hx-swap-oob={oob ? 'true' : undefined}
  >
    <CsrfField session={session} />
    <input type="hidden" name="previewVersion" value={shownPreviewVersion(request.status, files)} />
    <button
      type="submit"
      class="primary"
      disabled={!canApplyPreview(request, run, installation, supersededRunBlocksApply)}
    >
      Apply
    </button>{' '}
    {/* htmx adds the htmx-request class to the form while its request runs, which shows this. */}
    <span class="htmx-indicator apply-progress" role="status">
      Applying the ready files on GitHub. GitHub writes are sent at least 1 s apart, so this takes
      a second or more per file.
    </span>
  </form>
);

/**
 * The API's response to Apply, for browsers without JavaScript, unless the API rejected the
 * apply with a 4xx status, which shows the preview page with a PreviewFormError instead.
 */
export const ApplyResultPage: FC<{
  session: ActiveSession;
  request: PatchRequest;
  status: number;
  /** The line from describeApplyAnswer. */
  answer: string;
  body: string;
}> = ({ session, request, status, answer, body }) => (
  <Layout title="Apply" session={session}>
    <h1>Apply</h1>
    <p class={status < 400 ? 'notice' : 'error'}>
      <MarkedText text={answer} />
    </p>
    <ApplyResponseDetails body={body} />
    <p>
      <a href={`/patch-requests/${request.id}`}>Back to the preview</a>
    </p>
  </Layout>
);
