// Suggestions for a fix that inserts a line at the top of a file and another below line 1,
// posted through the real apply route to the fake GitHub. Each insertion alone would select
// line 1, and GitHub commits only one suggestion per line, so they must arrive as one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptSuggestions, firstOverlap, suggestionEdit } from '../helpers/accept-suggestions.ts';
import {
  createApplyTestContext,
  requestApply,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { insertReadyPatchRequest } from '../helpers/github-context.ts';

// The pull request adds the whole file, so every line of it can carry a suggestion.
const headText = "'use strict';\nexport const a = 1;\n";
const proposedText =
  "// @ts-check\n'use strict';\nimport { log } from './log';\nexport const a = 1;\n";

let applyContext: ApplyTestContext;

beforeAll(async () => {
  applyContext = await createApplyTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': headText },
  });
});

afterAll(async () => {
  await applyContext?.setup.close();
});

describe('suggestions for insertions around line 1', () => {
  it('merge into one suggestion', async () => {
    const { setup } = applyContext;
    const request = await insertReadyPatchRequest(setup.context, {
      runId: applyContext.runId,
      userId: applyContext.user.id,
      files: [{ path: 'src/a.ts', originalText: headText, proposedText }],
    });

    const response = await requestApply(applyContext, request.id, { mode: 'suggestions' });

    expect(response.status, await response.clone().text()).toBe(200);
    const result = (await response.json()) as { mode: string; reviewId: number };
    expect(result.mode).toBe('suggestions');
    const review = setup.fake.reviews.at(-1)!;
    expect(review.id).toBe(result.reviewId);
    expect(review.body).not.toContain('cannot be suggestions');
    expect(review.comments).toEqual([
      expect.objectContaining({
        path: 'src/a.ts',
        line: 1,
        startLine: null,
        body: "```suggestion\n// @ts-check\n'use strict';\nimport { log } from './log';\n```",
      }),
    ]);
    expect(firstOverlap(review.comments.map(suggestionEdit))).toBeNull();
    expect(acceptSuggestions(headText, review.comments)).toBe(proposedText);
  });
});
