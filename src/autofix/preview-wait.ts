import type { patchRequests } from '../db/schema/index.ts';

type StoredRequest = typeof patchRequests.$inferSelect;

/**
 * Returns when the rate limit lifts that the preview job of the request waits for, or null when
 * no preview job waits: none was queued after a rate limit, it started, or the request ended.
 */
export function previewRateLimitedUntil(request: StoredRequest): Date | null {
  if (request.status !== 'queued' && request.status !== 'running') return null;
  return request.previewRateLimitedUntil;
}
