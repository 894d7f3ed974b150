import { RequestError } from '@octokit/request-error';
import { describe, expect, it } from 'vitest';
import { asGitHubRejection, describeGitHubRejection } from '../../src/apply/github-rejection.ts';

const apply = {
  patchRequestId: '3f0c1d52-6a7e-4a55-9e1c-0f6d2b8a9c11',
  repository: 'octo-org/widgets',
  headSha: 'a'.repeat(40),
  mode: 'commit' as const,
};

describe('describeGitHubRejection', () => {
  it('says when no response arrived', () => {
    // As @octokit/request 10 raises it when fetch fails: status 500 and no response.
    const error = new RequestError('connect ECONNREFUSED 127.0.0.1:9', 500, {
      request: {
        method: 'PATCH',
        url: 'http://127.0.0.1:9/repos/octo-org/widgets/git/refs/heads/feature',
        headers: {},
      },
    });

    const rejection = asGitHubRejection(error);

    expect(rejection).toEqual({
      status: 500,
      message: 'connect ECONNREFUSED 127.0.0.1:9',
      method: 'PATCH',
      path: '/repos/octo-org/widgets/git/refs/heads/feature',
      noResponse: true,
    });
    expect(describeGitHubRejection(rejection!, apply)).toBe(
      'GitHub did not respond to PATCH /repos/octo-org/widgets/git/refs/heads/feature: connect ' +
        'ECONNREFUSED 127.0.0.1:9. Check that this server reaches GITHUB_API_URL. Patch request ' +
        `${apply.patchRequestId} was not applied, so you can apply it again after that.`,
    );
  });

  it('quotes the status of a response', () => {
    const error = new RequestError('Server Error', 500, {
      request: {
        method: 'POST',
        url: 'http://127.0.0.1:9/repos/octo-org/widgets/git/blobs',
        headers: {},
      },
      response: { status: 500, url: '', headers: {}, data: { message: 'Server Error' } },
    });

    const rejection = asGitHubRejection(error);

    expect(rejection?.noResponse).toBeUndefined();
    expect(describeGitHubRejection(rejection!, apply)).toMatch(
      /^GitHub returned 500 "Server Error" for POST \/repos\/octo-org\/widgets\/git\/blobs\. /,
    );
  });
});
