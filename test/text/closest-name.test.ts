import { describe, expect, it } from 'vitest';
import { closestName, maxSuggestionDistance } from '../../src/text/closest-name.ts';

describe('closestName', () => {
  it('scales the limit with the name length', () => {
    expect(maxSuggestionDistance('ab', 'ab')).toBe(1);
    expect(maxSuggestionDistance('port', 'role')).toBe(1);
    expect(maxSuggestionDistance('evnt', 'event')).toBe(1);
    expect(maxSuggestionDistance('pull_requests', 'pull_request')).toBe(4);
  });

  it('rejects short unrelated names', () => {
    expect(closestName('port', ['role'])).toBeNull();
    expect(closestName('xyz', ['role', 'web'])).toBeNull();
  });

  it('suggests close names', () => {
    expect(closestName('rule', ['role', 'web'])).toBe('role');
    expect(closestName('PLA', ['plan', 'login'])).toBe('plan');
    expect(closestName('pull_requests', ['push', 'pull_request'])).toBe('pull_request');
    expect(closestName('pul_reqest_revew', ['pull_request_review', 'pull_request'])).toBe('pull_request_review');
  });

  it('rejects names beyond a third of the length', () => {
    // 3 edits of 9 characters pass, 4 do not.
    expect(closestName('abcdefxyz', ['abcdefghi'])).toBe('abcdefghi');
    expect(closestName('abcdewxyz', ['abcdefghi'])).toBeNull();
  });
});
