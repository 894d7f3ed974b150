import type { FC } from 'hono/jsx';
import type { ApplyWait } from '../../../apply/apply-wait.ts';
import type { PreviewModel, PreviewSummary } from '../../../autofix/preview-summaries.ts';
import type { PreviewWait } from '../../../autofix/preview-wait.ts';
import type { ShownFileStatus } from '../../../autofix/visible-patch-requests.ts';
import { providerNames, type Provider } from '../../../llm/types.ts';
import { formatCount, joinWithAnd } from '../../../text/plural.ts';
import { ApplyWaitNotice, PreviewWaitNotice } from './apply-wait-notice.tsx';
import { MarkedText } from './marked-text.tsx';
import { formatTokens } from './preview-budget.tsx';
import { StatusBadge } from './status-badge.tsx';
import { Time } from './time.tsx';

/** A preview as the run page lists it. */
export interface ListedPreview extends PreviewSummary {
  /** The wait of the preview's apply job that the preview page shows too (see visibleApplyWait). */
  applyWait: ApplyWait | null;
  /** The preview's wait for a GitHub rate limit that the preview page shows too (see currentPreviewWait). */
  previewWait: PreviewWait | null;
}

/** The run page's previews as listed, and how many the user has on the run in all. */
export interface EarlierPreviewsView {
  previews: ListedPreview[];
  total: number;
  /** Whether the page lists up to `maxListed` previews, rather than the newest few. */
  listAll: boolean;
  /** The maximum number of previews that the page lists with `?previews=all`. */
  maxListed: number;
}

/** The order in which a preview's file counts are listed. */
const fileStatusOrder: ShownFileStatus[] = ['ready', 'failed', 'running', 'pending', 'cancelled'];

/** Formats a preview's files as "3 files: 2 ready, 1 failed", or null before the job added them. */
export function describePreviewFiles(statuses: ReadonlyMap<ShownFileStatus, number>): string | null {
  const total = [...statuses.values()].reduce((sum, files) => sum + files, 0);
  if (total === 0) return null;
  const counts = fileStatusOrder
    .filter((status) => (statuses.get(status) ?? 0) > 0)
    .map((status) => `${statuses.get(status)} ${status}`);
  return `${formatCount(total, 'file')}: ${counts.join(', ')}`;
}

/** Formats the providers and models behind a preview's files, as "Groq llama-3.3-70b-versatile". */
export function describePreviewModels(models: readonly PreviewModel[]): string {
  if (models.length === 0) return 'no model result';
  return joinWithAnd(
    models.map((entry) => {
      const provider = providerNames[entry.provider as Provider] ?? entry.provider;
      return entry.model ? `${provider} ${entry.model}` : provider;
    }),
  );
}

/** Formats a preview's tokens and which keys its calls used, as "1,234 tokens on your own key". */
export function describePreviewTokens(totalTokens: number, ownKeyTokens: number): string {
  const tokens = `${formatTokens(totalTokens)} ${totalTokens === 1 ? 'token' : 'tokens'}`;
  if (totalTokens === 0) return tokens;
  if (ownKeyTokens >= totalTokens) return `${tokens} on your own key`;
  if (ownKeyTokens === 0) return `${tokens} on the platform key`;
  return `${tokens}, ${formatTokens(ownKeyTokens)} of them on your own key`;
}

/**
 * The run page's list of the user's previews of the run, newest first. Each links to its
 * preview page and shows its status, how it was applied, its files by status, the models
 * behind them, its tokens and the waits of its preview and apply jobs. When the page lists
 * fewer previews than the user has, a note gives both numbers and, unless the page lists the
 * maximum already, links the longer list.
 * Without previews it is an empty element, so that a fragment can still replace it. With `oob`,
 * htmx swaps it in out of band, in place of the page's list.
 */
export const EarlierPreviews: FC<{ runId: string; view: EarlierPreviewsView; oob?: boolean }> = ({
  runId,
  view,
  oob,
}) => {
  const { previews, total } = view;
  const swapOob = oob ? 'true' : undefined;
  if (previews.length === 0) return <div id="earlier-previews" hx-swap-oob={swapOob}></div>;
  return (
    <section class="card" id="earlier-previews" hx-swap-oob={swapOob}>
      <h2>Earlier previews</h2>
      <ul class="previews">
        {previews.map((summary) => (
          <PreviewItem summary={summary} />
        ))}
      </ul>
      {previews.length < total ? (
        <p class="muted previews-cut">
          {`The ${previews.length} newest of your ${total} previews of this run are listed.`}
          {view.listAll ? null : (
            <>
              {' '}
              <a href={`/runs/${runId}?previews=all#earlier-previews`}>
                {total > view.maxListed ? `List the ${view.maxListed} newest` : `List all ${total}`}
              </a>
            </>
          )}
        </p>
      ) : null}
    </section>
  );
};

const PreviewItem: FC<{ summary: ListedPreview }> = ({ summary }) => {
  const { request, applyWait, previewWait } = summary;
  const files = describePreviewFiles(summary.fileStatuses);
  return (
    <li>
      <a href={`/patch-requests/${request.id}`}>
        <Time date={request.createdAt} />
      </a>{' '}
      <StatusBadge status={request.status} />
      {/* An applied preview keeps the status "ready", so only this label tells it apart. */}
      {request.appliedAt ? (
        <>
          {' '}
          <StatusBadge status="applied" /> <AppliedAs request={request} />
        </>
      ) : null}
      <span class="preview-details muted">
        {files ? <span class="preview-files">{` · ${files}`}</span> : null}
        {files ? (
          <span class="preview-models">
            <MarkedText text={` · ${describePreviewModels(summary.models)}`} />
          </span>
        ) : null}
        <span class="preview-tokens">
          {` · ${describePreviewTokens(request.totalTokens, summary.ownKeyTokens)}`}
        </span>
      </span>
      {request.status === 'cancelled' && request.error ? (
        <p class="muted">
          <MarkedText text={request.error} />
        </p>
      ) : null}
      {previewWait ? <PreviewWaitNotice wait={previewWait} /> : null}
      {applyWait ? <ApplyWaitNotice wait={applyWait} /> : null}
    </li>
  );
};

/** Renders how an applied preview was applied: the commit it pushed, or review suggestions. */
const AppliedAs: FC<{ request: PreviewSummary['request'] }> = ({ request }) => {
  if (request.applyMode === 'suggestions') return <span class="preview-applied">as review suggestions</span>;
  if (!request.appliedCommitSha) return <span class="preview-applied">as a commit</span>;
  return (
    <span class="preview-applied">
      as commit <code title={request.appliedCommitSha}>{request.appliedCommitSha.slice(0, 7)}</code>
    </span>
  );
};
