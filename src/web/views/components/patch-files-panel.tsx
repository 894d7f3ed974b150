import type { FC } from 'hono/jsx';
import type { patchFiles, patchRequests } from '../../../db/schema/index.ts';
import type { ActiveSession } from '../../session/session-store.ts';
import { diffStats } from '../../diff/diff-stats.ts';
import { CsrfField } from './csrf-field.tsx';
import { DiffView } from './diff-view.tsx';
import { isPatchRequestActive } from './patch-progress.tsx';
import { StatusBadge } from './status-badge.tsx';

type PatchRequest = typeof patchRequests.$inferSelect;
type PatchFile = typeof patchFiles.$inferSelect;

/**
 * The files of a preview: per file its status, error and diff, and "Regenerate this file".
 * While the request is queued or running, htmx replaces the panel every second. A run whose
 * fixes are blocked (see listFixBlockers), a superseded run and a cancelled, applied or applying
 * preview get no "Regenerate this file" buttons, because the server rejects regeneration then.
 */
export const PatchFilesPanel: FC<{
  session: ActiveSession;
  request: PatchRequest;
  files: PatchFile[];
  fixesBlocked: boolean;
  runSuperseded: boolean;
}> = ({ session, request, files, fixesBlocked, runSuperseded }) => {
  const active = isPatchRequestActive(request.status);
  const canRegenerate =
    !active &&
    request.status !== 'cancelled' &&
    !fixesBlocked &&
    !runSuperseded &&
    request.appliedAt === null &&
    request.applyStartedAt === null;
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
        {`${request.filesDone} of ${request.filesTotal} files done · ${request.totalTokens} tokens in all model calls`}
        {/* The total counts every call the providers reported, which the allowance may not have charged. */}
        <span class="muted"> (replaced results and calls on your own keys included)</span>
      </p>
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
      {request.error ? <p class="error">{request.error}</p> : null}
      {files.map((file) => {
        const regenerate = `/patch-requests/${request.id}/files/${file.id}/regenerate`;
        const stats = file.diff ? diffStats(file.diff, file.originalText ?? '') : null;
        return (
          <section class="patch-file card" id={`file-${file.id}`} data-path={file.path}>
            <header class="patch-file-head">
              <code class="path">{file.path}</code> <StatusBadge status={file.status} />
              {stats ? (
                <span class="diff-stats">
                  {' '}
                  <span class="added">{`+${stats.added}`}</span>{' '}
                  <span class="deleted">{`−${stats.deleted}`}</span>
                </span>
              ) : null}
              {file.provider ? (
                <span class="muted">{` ${file.provider} · ${file.model ?? ''} · ${file.totalTokens} tokens`}</span>
              ) : null}
              {canRegenerate ? (
                <form
                  class="regenerate"
                  method="post"
                  action={regenerate}
                  hx-post={regenerate}
                  hx-target="#patch-files"
                  hx-swap="outerHTML"
                >
                  <CsrfField session={session} />
                  <button type="submit">Regenerate this file</button>
                </form>
              ) : null}
            </header>
            {file.error ? <p class="error">{file.error}</p> : null}
            {stats?.largeRewrite ? (
              <p class="warning large-rewrite">
                {`This diff removes ${stats.deleted} of the file's ${stats.originalLines} lines. ` +
                  'Read all of it before you apply: a rewrite this large may change code that no ' +
                  'finding named.'}
              </p>
            ) : null}
            {file.diff ? <DiffView diff={file.diff} /> : null}
            {!file.diff && !file.error ? <p class="muted">No result yet.</p> : null}
          </section>
        );
      })}
    </div>
  );
};
