import type { FC } from 'hono/jsx';
import type { patchRequests } from '../../../db/schema/index.ts';
import { StatusBadge } from './status-badge.tsx';

type PatchRequest = typeof patchRequests.$inferSelect;

const activeStatuses = new Set(['queued', 'running']);

export function isPatchRequestActive(status: string): boolean {
  return activeStatuses.has(status);
}

/**
 * Progress of a patch request (files done of total). While the request is queued or running,
 * htmx fetches this fragment again every second and swaps it in; a finished one stops polling.
 */
export const PatchProgress: FC<{ request: PatchRequest }> = ({ request }) => {
  const active = isPatchRequestActive(request.status);
  const total = request.filesTotal;
  return (
    <div
      class="patch-progress"
      id={`progress-${request.id}`}
      data-status={request.status}
      hx-get={active ? `/patch-requests/${request.id}/progress` : undefined}
      hx-trigger={active ? 'every 1s' : undefined}
      hx-swap={active ? 'outerHTML' : undefined}
    >
      <p>
        <StatusBadge status={request.status} />{' '}
        {total > 0 ? `${request.filesDone} of ${total} files done` : 'Waiting for a worker…'}
      </p>
      <progress max={String(Math.max(total, 1))} value={String(request.filesDone)}></progress>
      {request.error ? <p class="error">{request.error}</p> : null}
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
