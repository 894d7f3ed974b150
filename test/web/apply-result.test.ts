import { describe, expect, it } from 'vitest';
import { describeApplyResult } from '../../src/web/views/apply-result.ts';

const sha = '0123456789abcdef0123456789abcdef01234567';
const beforeTheWaits = new Date('2026-12-05T13:59:00.000Z');
const afterTheWaits = new Date('2026-12-05T14:30:00.000Z');

describe('describeApplyResult', () => {
  it('gives the error message', () => {
    const body = { error: { code: 'conflict', message: 'The branch moved.', requestId: 'r1' } };
    expect(describeApplyResult(409, body)).toBe('The branch moved.');
  });

  it('names the commit of a commit', () => {
    const body = { mode: 'commit', commitSha: sha, files: ['a.ts', 'b.ts'], alreadyApplied: false };
    expect(describeApplyResult(200, body)).toBe('Applied 2 files as commit 0123456.');
  });

  it('counts suggestions of one file', () => {
    const body = { mode: 'suggestions', commitSha: null, files: ['a.ts'], alreadyApplied: false };
    expect(describeApplyResult(200, body)).toBe('Applied 1 file as review suggestions.');
  });

  it('adds the note of an apply', () => {
    const note = 'Nothing was committed, so the fixes were posted as review suggestions instead.';
    const body = { mode: 'suggestions', commitSha: null, files: ['a.ts'], note, alreadyApplied: false };
    expect(describeApplyResult(200, body)).toBe(`Applied 1 file as review suggestions. ${note}`);
  });

  it('says when it was applied before', () => {
    const body = { mode: 'commit', commitSha: sha, files: ['a.ts'], alreadyApplied: true };
    expect(describeApplyResult(200, body)).toBe('Already applied 1 file as commit 0123456.');
  });

  it('gives the time a rate limit lifts', () => {
    const body = { id: 'p1', status: 'waiting', rateLimitedUntil: '2026-12-05T14:00:01.000Z' };
    expect(describeApplyResult(202, body, beforeTheWaits)).toBe(
      'GitHub rate-limits this installation until 2026-12-05T14:00:01.000Z; the apply continues then.',
    );
  });

  it('describes a lifted rate limit', () => {
    const body = { id: 'p1', status: 'waiting', rateLimitedUntil: '2026-12-05T14:00:01.000Z' };
    expect(describeApplyResult(202, body, afterTheWaits)).toBe(
      "GitHub's rate limit on this installation lifted at 2026-12-05T14:00:01.000Z; the apply " +
        'continues as soon as a worker takes its job.',
    );
  });

  it('gives the latest start after another apply', () => {
    const body = { id: 'p1', status: 'waiting', otherApplyWaitUntil: '2026-12-05T14:10:01.000Z' };
    expect(describeApplyResult(202, body, beforeTheWaits)).toBe(
      'Another apply of this preview is in progress. Unless it succeeds, this apply continues ' +
        'when it ends, by 2026-12-05T14:10:01.000Z at the latest.',
    );
  });

  it('describes an ended apply wait', () => {
    // A release that ends the other apply queues the waiting job again with the current time.
    const body = { id: 'p1', status: 'waiting', otherApplyWaitUntil: '2026-12-05T14:10:01.000Z' };
    expect(describeApplyResult(202, body, afterTheWaits)).toBe(
      'The wait for another apply of this preview is over; this apply continues as soon as a ' +
        'worker takes its job.',
    );
  });

  it('returns null for other bodies', () => {
    expect(describeApplyResult(502, 'Bad Gateway')).toBeNull();
    expect(describeApplyResult(500, { error: {} })).toBeNull();
    expect(describeApplyResult(200, { ok: true })).toBeNull();
  });
});
