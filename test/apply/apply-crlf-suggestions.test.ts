// Suggestions for a file with CRLF line endings, posted through the real apply route to the
// fake GitHub. Accepting them the way GitHub does (the selected lines are replaced by the
// block's text, with its line breaks) must give the previewed file byte for byte.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headBranch } from '../../src/demo/git-repository.ts';
import { acceptSuggestions } from '../helpers/accept-suggestions.ts';
import {
  createApplyTestContext,
  gitIn,
  requestApply,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { insertReadyPatchRequest } from '../helpers/github-context.ts';

const base = {
  'win.txt': 'one\r\ntwo\r\n',
  'unix.txt': 'one\n',
};
// The pull request adds lines 3 to 5 of win.txt and lines 2 and 3 of unix.txt.
const head = {
  'win.txt': 'one\r\ntwo\r\nthree\r\nfour\r\nfive\r\n',
  'unix.txt': 'one\ntwo\nthree\n',
};
// One replacement and one insertion after the last line of win.txt, and one replacement in
// unix.txt.
const proposed = {
  'win.txt': 'one\r\ntwo\r\nTHREE\r\nfour\r\nfive\r\nsix\r\n',
  'unix.txt': 'one\nTWO\nthree\n',
};

let applyContext: ApplyTestContext;

beforeAll(async () => {
  applyContext = await createApplyTestContext({ base, head });
});

afterAll(async () => {
  await applyContext?.setup.close();
});

describe('suggestions in a CRLF file', () => {
  it('keep the line endings of each file', async () => {
    const { setup } = applyContext;
    const headTexts = {
      'win.txt': await gitIn(setup, 'cat-file', 'blob', `${headBranch}:win.txt`),
      'unix.txt': await gitIn(setup, 'cat-file', 'blob', `${headBranch}:unix.txt`),
    };
    // gitIn trims its output, so the final line break is added back.
    expect(headTexts['win.txt'] + '\r\n').toBe(head['win.txt']);
    expect(headTexts['unix.txt'] + '\n').toBe(head['unix.txt']);

    const request = await insertReadyPatchRequest(setup.context, {
      runId: applyContext.runId,
      userId: applyContext.user.id,
      files: Object.entries(proposed).map(([path, proposedText]) => ({
        path,
        originalText: head[path as keyof typeof head],
        proposedText,
      })),
    });
    const response = await requestApply(applyContext, request.id, { mode: 'suggestions' });
    expect(response.status, await response.clone().text()).toBe(200);
    expect((await response.json()).mode).toBe('suggestions');

    const review = setup.fake.reviews.at(-1)!;
    const commentsOf = (path: string) => review.comments.filter((comment) => comment.path === path);
    expect(commentsOf('win.txt').map((comment) => comment.body)).toEqual([
      '```suggestion\r\nTHREE\r\n```',
      '```suggestion\r\nfive\r\nsix\r\n```',
    ]);
    expect(commentsOf('unix.txt').map((comment) => comment.body)).toEqual([
      '```suggestion\nTWO\n```',
    ]);
    expect(review.body).not.toContain('cannot be suggestions');

    for (const path of ['win.txt', 'unix.txt'] as const) {
      const accepted = acceptSuggestions(head[path], commentsOf(path));
      expect(accepted, path).toBe(proposed[path]);
    }
  });
});
