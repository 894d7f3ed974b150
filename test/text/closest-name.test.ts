import { describe, expect, it } from 'vitest';
import { closestName, closestNames, maxSuggestionDistance } from '../../src/text/closest-name.ts';

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

  it('counts a swap as one edit', () => {
    expect(closestName('plna', ['token', 'plan', 'show'])).toBe('plan');
    expect(closestName('strat', ['start', 'migrate'])).toBe('start');
    expect(closestName('ab', ['ba'])).toBe('ba');
  });

  it('rejects names beyond a third of the length', () => {
    // 3 edits of 9 characters pass, 4 do not.
    expect(closestName('abcdefxyz', ['abcdefghi'])).toBe('abcdefghi');
    expect(closestName('abcdewxyz', ['abcdefghi'])).toBeNull();
  });
});

describe('closestNames', () => {
  it('keeps the case of the candidates', () => {
    expect(closestNames('codertocatt', ['Codertocat', 'octocat'], 3)).toEqual(['Codertocat']);
  });

  it('returns every name at the least distance', () => {
    expect(closestNames('hubot', ['hubot1', 'hubot2', 'hubot12', 'hubot3'], 2)).toEqual(['hubot1', 'hubot2']);
  });

  it('returns none when no name is close', () => {
    expect(closestNames('alice', ['bob', 'charlie'], 3)).toEqual([]);
  });
});
