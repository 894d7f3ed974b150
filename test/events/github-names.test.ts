import { describe, expect, it } from 'vitest';
import { githubLogin, repositoryFullName } from '../../src/events/github-names.ts';
import { pullRequestResponse } from '../../src/github/pull-request-response.ts';
import { splitRepository } from '../../src/github/repository-name.ts';

describe('GitHub names', () => {
  it('rejects dot segments in full names', () => {
    for (const name of ['../..', '../repo', 'octo/..', './repo', 'octo/.']) {
      const parsed = repositoryFullName.safeParse(name);
      expect(parsed.success, name).toBe(false);
      expect(parsed.error?.issues[0]?.message, name).toContain(`${JSON.stringify(name)} is invalid`);
    }
  });

  it('accepts names with dots', () => {
    for (const name of ['octo/.github', 'octo/...', 'octo/a..b', '.octo/repo']) {
      expect(repositoryFullName.safeParse(name).success, name).toBe(true);
    }
  });

  it('rejects dot logins', () => {
    expect(githubLogin.safeParse('..').success).toBe(false);
    expect(githubLogin.safeParse('.').success).toBe(false);
    expect(githubLogin.safeParse('octocat').success).toBe(true);
  });

  it('splitRepository rejects stored dot names', () => {
    expect(() => splitRepository('../..')).toThrow(
      'Invalid repository name "../..": GitHub does not allow "." or ".." as OWNER or NAME, ' +
        'so no request is sent for it.',
    );
    expect(() => splitRepository('octo/..')).toThrow('Invalid repository name "octo/.."');
    expect(splitRepository('octo/.github')).toEqual(['octo', '.github']);
  });

  it('rejects a renamed head repository of dots', () => {
    const sha = 'a'.repeat(40);
    const response = {
      state: 'open',
      closed_at: null,
      merged_at: null,
      updated_at: '2026-01-01T00:00:00Z',
      changed_files: 1,
      head: { ref: 'main', sha, repo: { id: 1, full_name: '../..' } },
      base: { ref: 'main', sha, repo: { id: 1 } },
    };
    const parsed = pullRequestResponse.safeParse(response);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(['head', 'repo', 'full_name']);
  });
});
