import { listRunPreviewSummaries } from '../../autofix/preview-summaries.ts';
import type { Database } from '../../db/client.ts';
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
 * maxListedPreviews of them with `listAll`.
 */
export async function loadEarlierPreviews(
  db: Database,
  input: { userId: string; runId: string; listAll: boolean },
): Promise<EarlierPreviewsView> {
  const { listAll } = input;
  const previews = await listRunPreviewSummaries(db, {
    userId: input.userId,
    runId: input.runId,
    limit: listAll ? maxListedPreviews : listedPreviews,
  });
  return { ...previews, listAll, maxListed: maxListedPreviews };
}
