// GitHub rejects a GitHub App's commit to .github/workflows/ without the Workflows permission,
// which the app does not request. So Apply posts such a preview as suggestions by default and
// rejects mode commit before any write.
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { patchFiles, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import {
  countApplyWrites,
  createApplyTestContext,
  expectNothingApplied,
  gitIn,
  headText,
  proposedText,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import {
  insertReadyPatchRequest,
  owner,
  prNumber,
  repo,
  repository,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

const workflowPath = '.github/workflows/ci.yml';
const baseWorkflow = 'on: push\njobs: {}\n';
const headWorkflow = 'on: [push]\njobs: {}\n';
const proposedWorkflow = 'on: [push, pull_request]\njobs: {}\n';
const rejectionMessage =
  `Invalid mode "commit": ${workflowPath} is a GitHub Actions workflow file, and GitHub ` +
  "accepts a GitHub App's commit to .github/workflows/ only with the Workflows permission, " +
  "which Fixwright's app does not request. Nothing was committed; use mode \"suggestions\", " +
  'the default for such a preview, to post the fixes as a review.';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;

const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);

function newRequest() {
  return insertReadyPatchRequest(setup.context, {
    runId: applyContext.runId,
    userId: applyContext.user.id,
    files: [
      { path: 'app.txt', originalText: headText, proposedText },
      { path: workflowPath, originalText: headWorkflow, proposedText: proposedWorkflow },
    ],
  });
}

/**
 * Inserts a preview whose workflow file failed, and a trigger that makes that file ready when
 * an apply claims the request, as a regeneration that finished between the apply's first read
 * of the files and its claim would.
 */
async function newRequestReadyAtClaim() {
  const request = await newRequest();
  await setup.context.db
    .update(patchFiles)
    .set({ status: 'failed', error: 'model failed' })
    .where(and(eq(patchFiles.patchRequestId, request.id), eq(patchFiles.path, workflowPath)));
  await setup.context.db
    .update(patchRequests)
    .set({ status: 'partially_ready' })
    .where(eq(patchRequests.id, request.id));
  await setup.context.db.execute(sql.raw(`
    CREATE OR REPLACE FUNCTION test_ready_workflow_at_claim() RETURNS trigger AS $$
    BEGIN
      IF NEW.apply_started_at IS NOT NULL AND OLD.apply_started_at IS NULL THEN
        UPDATE patch_files SET status = 'ready', error = NULL
        WHERE patch_request_id = NEW.id AND path = '${workflowPath}';
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql;
    CREATE TRIGGER test_ready_workflow_at_claim AFTER UPDATE ON patch_requests
      FOR EACH ROW EXECUTE FUNCTION test_ready_workflow_at_claim();`));
  return request;
}

beforeAll(async () => {
  applyContext = await createApplyTestContext({
    base: { 'app.txt': 'one\n', [workflowPath]: baseWorkflow },
    head: { 'app.txt': headText, [workflowPath]: headWorkflow },
  });
  setup = applyContext.setup;
});

beforeEach(async () => {
  await resetPullRequestHead(setup);
  await setup.context.db
    .update(prRuns)
    .set({ headRepository: repository })
    .where(eq(prRuns.id, applyContext.runId));
});

afterEach(async () => {
  await setup.context.db.execute(
    sql`DROP TRIGGER IF EXISTS test_ready_workflow_at_claim ON patch_requests`,
  );
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

/** Checks that `response` is the review of both files' suggestions and the last fake review. */
async function expectSuggestionReview(response: Response) {
  expect(response.status).toBe(200);
  const result = await response.json();
  const review = setup.fake.reviews.at(-1)!;
  expect(result.mode).toBe('suggestions');
  expect(result.commitSha).toBeNull();
  expect(result.reviewId).toBe(review.id);
  expect(review.owner).toBe(owner);
  expect(review.repo).toBe(repo);
  expect(review.comments.map((comment) => [comment.path, comment.body])).toEqual([
    [workflowPath, '```suggestion\non: [push, pull_request]\n```'],
    ['app.txt', '```suggestion\nTWO\n```'],
  ]);
  expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
}

/** Checks that `response` is the 400 rejection of mode commit for the workflow file. */
async function expectWorkflowRejection(response: Response) {
  expect(response.status).toBe(400);
  const { error } = await response.json();
  expect(error.code).toBe('bad_request');
  expect(error.message).toBe(rejectionMessage);
  expect(error.workflowFiles).toEqual([workflowPath]);
}

describe('apply of workflow files', () => {
  it('rejects mode commit before any write', async () => {
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'commit' });

    await expectWorkflowRejection(response);
    await expectNothingApplied(setup, request.id, writesBefore);
  });

  it('applies as suggestions by default', async () => {
    const request = await newRequest();

    const response = await apply(request.id);

    await expectSuggestionReview(response);
  });

  it('keeps suggestions when GitHub shows no fork', async () => {
    // The stored run names a fork, but GitHub's pull request has its head in the base
    // repository, which would make commit the default for other files.
    await setup.context.db
      .update(prRuns)
      .set({ headRepository: 'forker/widgets' })
      .where(eq(prRuns.id, applyContext.runId));
    const request = await newRequest();

    const response = await apply(request.id);

    await expectSuggestionReview(response);
  });

  it('posts workflow fixes as suggestions', async () => {
    const request = await newRequest();

    const response = await apply(request.id, { mode: 'suggestions' });

    await expectSuggestionReview(response);
  });
});

describe('apply of a workflow file ready at the claim', () => {
  it('applies as suggestions by default', async () => {
    const request = await newRequestReadyAtClaim();

    const response = await apply(request.id);

    await expectSuggestionReview(response);
  });

  it('rejects mode commit before any write', async () => {
    const request = await newRequestReadyAtClaim();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'commit' });

    await expectWorkflowRejection(response);
    expect(countApplyWrites(setup)).toBe(writesBefore);
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
    const [row] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(row!.applyStartedAt).toBeNull();
    expect(row!.appliedAt).toBeNull();
    expect(row!.appliedCommitSha).toBeNull();
  });
});
