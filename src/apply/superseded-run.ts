import type { patchRequests, prRuns } from '../db/schema/index.ts';

type StoredRequest = Pick<typeof patchRequests.$inferSelect, 'applyStartedAt' | 'applyJobId'>;

/**
 * Tells whether an earlier apply of the request may have written to GitHub unrecorded, because a
 * call's claim remains or an apply job was queued. That apply may have pushed the commit that
 * superseded the run, so applying again stays allowed, and it finds and records the commit.
 */
export function hasUnrecordedApply(request: StoredRequest): boolean {
  return request.applyStartedAt !== null || request.applyJobId !== null;
}

/**
 * Tells whether applying the request is rejected because a newer commit superseded its run. The
 * preview page disables "Apply" in the same case as `applyPatchRequest` rejects it.
 */
export function isApplyBlockedBySupersededRun(
  request: StoredRequest,
  run: Pick<typeof prRuns.$inferSelect, 'status'>,
): boolean {
  return run.status === 'superseded' && !hasUnrecordedApply(request);
}
