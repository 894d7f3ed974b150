import type { FC } from 'hono/jsx';
import { currentPreviewWait } from '../../../autofix/preview-wait.ts';
import { shownFileStatus, splitPreviewTokens } from '../../../autofix/visible-patch-requests.ts';
import type { PreviewKeyUsage } from '../../../autofix/preview-key-usage.ts';
import type { KeySource, patchFiles, patchRequests } from '../../../db/schema/index.ts';
import type { ActiveSession } from '../../session/session-store.ts';
import { diffStats } from '../../diff/diff-stats.ts';
import { showCodePoints } from '../../../text/invisible-characters.ts';
import { CsrfField } from './csrf-field.tsx';
import { DiffView } from './diff-view.tsx';
import { FormError } from './form-error.tsx';
import { PreviewWaitNotice } from './apply-wait-notice.tsx';
import { MarkedText } from './marked-text.tsx';
import { isPatchRequestActive } from './patch-progress.tsx';
import { StatusBadge } from './status-badge.tsx';

type PatchRequest = typeof patchRequests.$inferSelect;

/** Names the key that produced a file's result, or nothing when the ledger has no row of it. */
function keySourceLabel(source: KeySource | undefined): string {
  if (source === 'user') return 'your own key · ';
  if (source === 'platform') return 'platform key · ';
  return '';
}
type PatchFile = typeof patchFiles.$inferSelect;

/** A "Regenerate this file" that the server rejected, such as with 409 over the allowance. */
export interface RegenerateRejection {
  fileId: string;
  message: string;
}

/**
 * The files of a preview: per file its status, error and diff, and "Regenerate this file".
 * A file whose last regeneration failed shows why above its earlier diff, which it kept.
 * "Regenerate this file" sends its htmx request with the file's result element as target, so an
 * error response appears next to the file and the panel stays. A queued regeneration, or a
 * rejection in `regenerateRejection`, returns the whole panel instead (see patchRequestPages).
 * While the request is queued or running, htmx replaces the panel every second, and a wait for
 * a GitHub rate limit is shown with its time from the moment a file read got the limit. A run whose
 * fixes are blocked (see listFixBlockers) or that is no longer completed, and a cancelled,
 * applied or applying preview, or one whose last apply GitHub did not confirm, get no
 * "Regenerate this file" buttons, because the server rejects regeneration then.
 */
export const PatchFilesPanel: FC<{
  session: ActiveSession;
  request: PatchRequest;
  files: PatchFile[];
  fixesBlocked: boolean;
  keyUsage: PreviewKeyUsage;
  regenerateRejection?: RegenerateRejection | undefined;
}> = ({ session, request, files, fixesBlocked, keyUsage, regenerateRejection }) => {
  const active = isPatchRequestActive(request.status);
  const tokens = splitPreviewTokens(request, files);
  const previewWait = currentPreviewWait(request, files.filter((file) => file.status === 'running').length);
  const canRegenerate =
    !active &&
    request.status !== 'cancelled' &&
    !fixesBlocked &&
    request.appliedAt === null &&
    request.applyStartedAt === null &&
    request.applyUnconfirmedAt === null;
  return (
    <div
      id="patch-files"
      data-status={request.status}
      hx-get={active ? `/patch-requests/${request.id}/files` : undefined}
      hx-trigger={active ? 'every 1s' : undefined}
      hx-swap={active ? 'outerHTML' : undefined}
    >
      <p class="meta">
        <StatusBadge status={request.status} />{' '}
        {`${request.filesDone} of ${request.filesTotal} files done · ${tokens.files} tokens in the files' model calls`}
        {tokens.discarded > 0 ? ` · ${tokens.discarded} tokens in discarded results, ${tokens.total} in all` : null}
        {` · ${keyUsage.chargedTokens} charged to your allowance, ${keyUsage.ownKeyTokens} on your own keys`}
      </p>
      {tokens.discarded > 0 ? (
        <p class="muted discarded-tokens">
          Discarded results are those that no file shows: the earlier result of a regenerated
          file (while the regeneration runs, and for good once it stores a new result), the
          result of a failed regeneration, the result of a retried attempt of the preview job
          that finished a file after another attempt had stored it, or a failed result of an
          attempt that a service stop ended. Their model calls used tokens like the others.
        </p>
      ) : null}
      {active ? (
        <>
          <progress max={String(Math.max(request.filesTotal, 1))} value={String(request.filesDone)}></progress>
          <noscript>
            <p>
              <a href={`/patch-requests/${request.id}`}>Reload</a> to see the progress.
            </p>
          </noscript>
        </>
      ) : null}
      {previewWait ? <PreviewWaitNotice wait={previewWait} /> : null}
      {request.error ? (
        <p class="error">
          <MarkedText text={request.error} />
        </p>
      ) : null}
      {files.map((file) => {
        const regenerate = `/patch-requests/${request.id}/files/${file.id}/regenerate`;
        const stats = file.diff ? diffStats(file.diff, file.originalText ?? '') : null;
        const status = shownFileStatus(request.status, file.status);
        const rejection = regenerateRejection?.fileId === file.id ? regenerateRejection.message : null;
        return (
          // data-path names the file for scripts and tests. An attribute cannot hold a mark, so
          // it gets the code points in angle brackets.
          <section class="patch-file card" id={`file-${file.id}`} data-path={showCodePoints(file.path)}>
            <header class="patch-file-head">
              <code class="path">
                <MarkedText text={file.path} />
              </code>{' '}
              <StatusBadge status={status} />
              {stats ? (
                <span class="diff-stats">
                  {' '}
                  <span class="added">{`+${stats.added}`}</span>{' '}
                  <span class="deleted">{`−${stats.deleted}`}</span>
                </span>
              ) : null}
              {file.provider ? (
                <span class="muted">
                  <MarkedText
                    text={` ${file.provider} · ${keySourceLabel(keyUsage.fileKeySources.get(file.id))}${file.model ?? ''} · ${file.totalTokens} tokens`}
                  />
                </span>
              ) : file.totalTokens > 0 ? (
                // A call that failed after it used tokens stores no provider, but its tokens
                // count in the files' sum above.
                <span class="muted">{` ${file.totalTokens} tokens`}</span>
              ) : null}
              {canRegenerate ? (
                <form
                  class="regenerate"
                  method="post"
                  action={regenerate}
                  hx-post={regenerate}
                  hx-target={`#${regenerateResultId(file.id)}`}
                  hx-swap="innerHTML"
                >
                  <CsrfField session={session} />
                  <button type="submit">Regenerate this file</button>
                </form>
              ) : null}
            </header>
            <div class="regenerate-result" id={regenerateResultId(file.id)} aria-live="polite">
              {rejection ? <FormError message={rejection} /> : null}
            </div>
            {file.error ? (
              <p class="error">
                <MarkedText text={file.error} />
              </p>
            ) : null}
            {file.keyNotice ? (
              <p class="warning key-notice">
                <MarkedText text={file.keyNotice} />
              </p>
            ) : null}
            {file.regenerationError && file.status === 'ready' ? (
              <p class="warning regeneration-failed">
                <MarkedText
                  text={
                    'The last regeneration of this file failed, so the file keeps its earlier diff, ' +
                    `shown below: ${file.regenerationError}`
                  }
                />
              </p>
            ) : null}
            {status === 'cancelled' ? <CancelledFileNote hasDiff={file.diff !== null} /> : null}
            {stats?.largeRewrite ? (
              <p class="warning large-rewrite">
                {`This diff removes ${stats.deleted} of the file's ${stats.originalLines} lines. ` +
                  'Read all of it before you apply: a rewrite this large may change code that no ' +
                  'finding named.'}
              </p>
            ) : null}
            {file.diff && file.proposedText === '' ? (
              <p class="muted empties-file">
                {'This fix leaves the file empty. Applying it as a commit keeps the file with no ' +
                  'content, and does not delete it.'}
              </p>
            ) : null}
            {file.diff ? <DiffView diff={file.diff} /> : null}
            {!file.diff && !file.error && status !== 'cancelled' ? (
              <p class="muted">
                {file.keptResult
                  ? 'Regenerating this file. Its earlier diff is kept and comes back if the ' +
                    'regeneration fails.'
                  : 'No result yet.'}
              </p>
            ) : null}
          </section>
        );
      })}
    </div>
  );
};

/** Returns the id of the element next to a file where an error of its "Regenerate this file" shows. */
function regenerateResultId(fileId: string): string {
  return `regenerate-result-${fileId}`;
}

/**
 * Explains why a file of a cancelled preview shows no ready result. A diff that its model call
 * stored stays visible, but Apply rejects a cancelled preview.
 */
const CancelledFileNote: FC<{ hasDiff: boolean }> = ({ hasDiff }) => (
  <p class="muted cancelled-file">
    {hasDiff
      ? 'Not applied: the preview was cancelled, so this diff cannot be applied. Request a new ' +
        'preview from the run page to apply a fix.'
      : 'No result: the preview was cancelled before this file was done.'}
  </p>
);
