import type { patchRequests } from '../db/schema/index.ts';
import { describeWait } from '../runs/run-rate-limit.ts';
import { formatCount, pickForm } from '../text/plural.ts';

type StoredRequest = typeof patchRequests.$inferSelect;

/** A preview's wait for a GitHub rate limit, as the dashboard and the API show it. */
export interface PreviewWait {
  /** When the rate limit lifts, and the preview job that continues the preview starts. */
  until: Date;
  /**
   * Files of the preview whose status is `running`. After a rate limit, no file starts, so
   * these are the files that started before it, whose model calls the rate-limited attempt lets
   * end before the waiting job is queued. 0 once that job is queued.
   */
  filesRunning: number;
}

/**
 * Returns the wait of the request's preview for a GitHub rate limit, or null when it waits for
 * none: no attempt hit a limit, the job that continues after the limit started, or the request
 * ended. `filesRunning` is the number of its files whose status is `running`.
 */
export function currentPreviewWait(request: StoredRequest, filesRunning: number): PreviewWait | null {
  if (request.status !== 'queued' && request.status !== 'running') return null;
  if (request.previewRateLimitedUntil === null) return null;
  return { until: request.previewRateLimitedUntil, filesRunning };
}

/**
 * Builds the notice of a preview's wait: the text before its time and the text after it. While
 * files that started before the limit still run, the text counts them, because the preview
 * continues only after they end.
 */
export function describePreviewWait(wait: PreviewWait, now = new Date()): { before: string; after: string } {
  const text = describeWait('Previewing', wait.until, now);
  if (wait.filesRunning === 0) return text;
  const running =
    `${formatCount(wait.filesRunning, 'file')} that started before the limit ` +
    `${pickForm(wait.filesRunning, 'is', 'are')} still running`;
  if (wait.until.getTime() > now.getTime()) {
    return {
      before: text.before,
      after: `. ${running}, and the other files continue by themselves after that time.`,
    };
  }
  return {
    before: text.before,
    after:
      `. ${running}, and the other files continue once ` +
      `${pickForm(wait.filesRunning, 'it ends', 'they end')} and a worker takes the job.`,
  };
}
