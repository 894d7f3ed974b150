/**
 * Returns the pr_runs values that queue a run again for an event of its pull request: the
 * event's base and time, and no error, completion or rate-limit wait of the earlier attempt.
 */
export function queuedAgainValues(
  pullRequest: { base: { sha: string; ref: string } },
  updatedAt: Date,
) {
  return {
    status: 'queued' as const,
    error: null,
    completedAt: null,
    reportError: null,
    prUpdatedAt: updatedAt,
    baseSha: pullRequest.base.sha,
    baseRef: pullRequest.base.ref,
    // The job that waited for a rate limit was cancelled with the run's earlier work. Its wait
    // would show again while the new job is queued or analyzing.
    rateLimitedUntil: null,
    rateLimitedJobId: null,
    rateLimitedQueue: null,
  };
}
