import type { PullRequestPayload } from './pull-request.ts';

/**
 * How far past its receive time an event's `updated_at` or `closed_at` is trusted, in
 * milliseconds. These times order the events of a pull request, so a time in the future would
 * make every later event look older until that time passed: pushes superseded on arrival,
 * reopens ignored as earlier than the close. The allowance covers a clock of this process that
 * runs behind GitHub's. GitHub recommends backdating a JWT's `iat` by 60 seconds "to protect
 * against clock drift" (docs.github.com, "Generating a JSON Web Token (JWT) for a GitHub App").
 */
export const maxEventClockSkewMs = 60_000;

/** A pull request payload whose times are bounded, and a note on each time it bounded. */
export interface BoundedPayload {
  payload: PullRequestPayload;
  /** Sentences on the bounded times, for the delivery's outcome, or null when none was bounded. */
  note: string | null;
}

/**
 * Returns `payload` with `pull_request.updated_at` and `closed_at` replaced by `receivedAt` plus
 * `maxEventClockSkewMs` where they are later than that.
 */
export function boundEventTimes(payload: PullRequestPayload, receivedAt: Date): BoundedPayload {
  const latest = receivedAt.getTime() + maxEventClockSkewMs;
  const latestText = new Date(latest).toISOString();
  const notes: string[] = [];
  const bound = (field: 'updated_at' | 'closed_at', value: string): string => {
    if (Date.parse(value) <= latest) return value;
    notes.push(
      `${field} ${value} is more than ${maxEventClockSkewMs / 1000} s after the event was ` +
        `received, so ${latestText} is used instead`,
    );
    return latestText;
  };

  const pullRequest = payload.pull_request;
  const updatedAt = bound('updated_at', pullRequest.updated_at);
  let closedAt = pullRequest.closed_at;
  if (closedAt) closedAt = bound('closed_at', closedAt);
  if (notes.length === 0) return { payload, note: null };
  const bounded = { ...pullRequest, updated_at: updatedAt, closed_at: closedAt };
  return { payload: { ...payload, pull_request: bounded }, note: notes.join('; ') };
}
