import { pickForm } from '../../text/plural.ts';

/**
 * Returns one sentence about a response of the apply API: its error message, the wait for a
 * GitHub rate limit or for another apply, or what was applied followed by the apply's note, or
 * null for a body of another shape. A wait whose time is before `now` is described as over: a
 * release of the other apply queues the waiting job again with the current time. public/app.js
 * words it the same way for browsers with JavaScript.
 */
export function describeApplyResult(httpStatus: number, data: unknown, now = new Date()): string | null {
  if (!data || typeof data !== 'object') return null;
  const body = data as {
    error?: { message?: unknown };
    files?: unknown;
    mode?: unknown;
    commitSha?: unknown;
    alreadyApplied?: unknown;
    note?: unknown;
    status?: unknown;
    rateLimitedUntil?: unknown;
    otherApplyWaitUntil?: unknown;
  };
  if (httpStatus >= 400) {
    return typeof body.error?.message === 'string' ? body.error.message : null;
  }
  const waitOver = (until: string) => Date.parse(until) <= now.getTime();
  if (body.status === 'waiting' && typeof body.rateLimitedUntil === 'string') {
    if (waitOver(body.rateLimitedUntil)) {
      return (
        `GitHub's rate limit on this installation lifted at ${body.rateLimitedUntil}; ` +
        'the apply continues as soon as a worker takes its job.'
      );
    }
    return (
      `GitHub rate-limits this installation until ${body.rateLimitedUntil}; ` +
      'the apply continues then.'
    );
  }
  if (body.status === 'waiting' && typeof body.otherApplyWaitUntil === 'string') {
    if (waitOver(body.otherApplyWaitUntil)) {
      return (
        'The wait for another apply of this preview is over; this apply continues as soon as ' +
        'a worker takes its job.'
      );
    }
    return (
      'Another apply of this preview is in progress. Unless it succeeds, this apply continues ' +
      `when it ends, by ${body.otherApplyWaitUntil} at the latest.`
    );
  }
  if (!Array.isArray(body.files)) return null;
  const count = `${body.files.length} ${pickForm(body.files.length, 'file', 'files')}`;
  const verb = body.alreadyApplied ? 'Already applied' : 'Applied';
  const note = typeof body.note === 'string' ? ` ${body.note}` : '';
  if (body.mode === 'commit' && typeof body.commitSha === 'string') {
    return `${verb} ${count} as commit ${body.commitSha.slice(0, 7)}.${note}`;
  }
  return `${verb} ${count} as review suggestions.${note}`;
}

/**
 * Builds the line that shows an apply response: `HTTP STATUS: SUMMARY`, or the status alone
 * when describeApplyResult returned no summary. public/app.js builds the same line.
 */
export function describeApplyAnswer(httpStatus: number, summary: string | null): string {
  return summary ? `HTTP ${httpStatus}: ${summary}` : `HTTP ${httpStatus}`;
}
