import type { FC } from 'hono/jsx';
import type { patchRequests } from '../../../db/schema/index.ts';
import { MarkedText } from './marked-text.tsx';
import { StatusBadge } from './status-badge.tsx';

type PatchRequest = typeof patchRequests.$inferSelect;

const activeStatuses = new Set(['queued', 'running']);

export function isPatchRequestActive(status: string): boolean {
  return activeStatuses.has(status);
}

/**
 * Progress of a patch request (files done of total) on the run page. While the request is
 * queued or running, htmx fetches this fragment again every second and swaps it in, with the
 * run page's "Earlier previews" list out of band. A finished one stops polling. `listAll` is
 * whether the run page lists up to 200 previews (`?previews=all`), which the list keeps.
 */
export const PatchProgress: FC<{ request: PatchRequest; listAll: boolean }> = ({ request, listAll }) => {
  const active = isPatchRequestActive(request.status);
  const total = request.filesTotal;
  const progressUrl = `/patch-requests/${request.id}/progress${listAll ? '?previews=all' : ''}`;
  return (
    <div
      class="patch-progress"
      id={`progress-${request.id}`}
      data-status={request.status}
      hx-get={active ? progressUrl : undefined}
      hx-trigger={active ? 'every 1s' : undefined}
      hx-swap={active ? 'outerHTML' : undefined}
    >
      <p>
        <StatusBadge status={request.status} />{' '}
        {total > 0 ? `${request.filesDone} of ${total} files done` : 'Waiting for a worker…'}
      </p>
      <progress max={String(Math.max(total, 1))} value={String(request.filesDone)}></progress>
      {request.error ? (
        <p class="error">
          <MarkedText text={request.error} />
        </p>
      ) : null}
      {active ? null : (
        <p>
          <a class="button primary" href={`/patch-requests/${request.id}`}>
            Open the preview
          </a>
        </p>
      )}
    </div>
  );
};
