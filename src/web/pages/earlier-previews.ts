import { findApplyRetry, visibleApplyWait } from '../../apply/apply-retry.ts';
import { currentApplyWait } from '../../apply/apply-wait.ts';
import { listRunPreviewSummaries } from '../../autofix/preview-summaries.ts';
import { currentPreviewWait } from '../../autofix/preview-wait.ts';
import type { AppContext } from '../../context.ts';
import { quoteValue } from '../../text/quote-value.ts';
import { AppError } from '../errors.ts';
import type { EarlierPreviewsView } from '../views/components/earlier-previews.tsx';

/** Previews that the run page lists, the newest first, and the maximum it lists with `?previews=all`. */
const listedPreviews = 10;
const maxListedPreviews = 200;

/** Reads the run page's `previews` query value: `all` lists up to maxListedPreviews previews. */
export function parsePreviewsQuery(value: string | undefined): boolean {
  if (value === undefined) return false;
  if (value === 'all') return true;
  throw new AppError(
    'bad_request',
    `Invalid previews value ${quoteValue(value, 40)}: use previews=all to list more previews, or leave it out.`,
  );
}

/**
 * Loads the run page's "Earlier previews" list: the user's newest previews of the run, up to
 * maxListedPreviews of them with `listAll`. Each preview's apply wait follows the preview
 * page's rule (see visibleApplyWait), so a wait that a failed attempt of the apply job ended is
 * left out. pg-boss is read only for the previews that store an apply wait. A preview's wait for
 * a rate limit on a file read is shown as on the preview page (see currentPreviewWait).
 */
export async function loadEarlierPreviews(
  context: Pick<AppContext, 'db' | 'boss'>,
  input: { userId: string; runId: string; listAll: boolean },
): Promise<EarlierPreviewsView> {
  const { listAll } = input;
  const { previews, total } = await listRunPreviewSummaries(context.db, {
    userId: input.userId,
    runId: input.runId,
    limit: listAll ? maxListedPreviews : listedPreviews,
  });
  const listed = [];
  for (const summary of previews) {
    const { request } = summary;
    const retry = currentApplyWait(request) ? await findApplyRetry(context.boss, request) : null;
    listed.push({
      ...summary,
      applyWait: visibleApplyWait(request, retry),
      previewWait: currentPreviewWait(request, summary.fileStatuses.get('running') ?? 0),
    });
  }
  return { previews: listed, total, listAll, maxListed: maxListedPreviews };
}
