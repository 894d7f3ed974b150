// GitHub rejects a GitHub App's commit to .github/workflows/ without the Workflows permission,
// which the app does not request. Unless the installation's token has Workflows: write, Apply
// posts such a preview as suggestions by default and rejects mode commit before any write.
// With it, Apply commits such a preview like any other.
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { installations, patchFiles, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { defaultPermissions } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import {
  countApplyWrites,
  createApplyTestContext,
  expectNothingApplied,
  gitIn,
  headText,
  proposedText,
  requestApply,
  resetApplyRun,
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
import { logsOf } from '../helpers/context.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const workflowPath = '.github/workflows/ci.yml';
const baseWorkflow = 'on: push\njobs: {}\n';
const headWorkflow = 'on: [push]\njobs: {}\n';
const proposedWorkflow = 'on: [push, pull_request]\njobs: {}\n';
const secret = 'workflow-files-secret';

/** Builds the 400 message for mode commit when the token has the Workflows permission `granted`. */
function rejectionMessage(granted: string): string {
  return (
    `Invalid mode "commit": ${workflowPath} is a GitHub Actions workflow file, and GitHub ` +
    "accepts a GitHub App's commit to .github/workflows/ only with the Workflows permission " +
    `set to write, but the installation's access token has ${granted}. Nothing was committed. ` +
    'Use mode "suggestions", the default for such a preview, to post the fixes as a review, or ' +
    'give the GitHub App the repository permission Workflows: read and write and have the ' +
    "installation's owner accept it."
  );
}

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let delivery = 0;

const apply = (id: string, body?: unknown) => requestApply(applyContext, id, body);

/** Counts the installation access tokens that the fake issued. */
const countTokenRequests = () =>
  setup.fake.requests.filter(
    (request) => request.method === 'POST' && request.path.endsWith('/access_tokens'),
  ).length;

/**
 * Sets the installation's Workflows permission in the fake to `workflows` (none when null) and
 * delivers GitHub's `installation.new_permissions_accepted` event for it, as GitHub does once
 * the owner accepts a permission change. Returns the delivery's outcome.
 */
async function acceptWorkflowsPermission(workflows: 'read' | 'write' | null): Promise<string> {
  const permissions = workflows === null ? { ...defaultPermissions } : { ...defaultPermissions, workflows };
  setup.fake.setInstallation({
    id: setup.installationId,
    account: { login: owner, id: 1, type: 'Organization' },
    permissions,
  });
  const payload = examplePayload('installation', 'new_permissions_accepted', setup.installationId);
  payload.installation.permissions = permissions;
  const response = await postSignedWebhook(applyContext.app, {
    secret,
    event: 'installation',
    deliveryId: `workflow-files-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return (await response.json()).outcome;
}

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
    env: { WEBHOOK_SECRET: secret },
  });
  setup = applyContext.setup;
});

beforeEach(async () => {
  // A commit moves the head, and the apply that finds it moved records a run for it.
  await resetApplyRun(setup, applyContext.runId);
  await setup.context.db
    .update(prRuns)
    .set({ headRepository: repository })
    .where(eq(prRuns.id, applyContext.runId));
});

afterEach(async () => {
  await setup.context.db.execute(
    sql`DROP TRIGGER IF EXISTS test_ready_workflow_at_claim ON patch_requests`,
  );
  await setup.context.db.execute(
    sql`DROP TRIGGER IF EXISTS test_fail_apply_record ON patch_requests`,
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

/**
 * Checks that `response` is the 400 rejection of mode commit for the workflow file, for a
 * token whose Workflows permission is `permission`.
 */
async function expectWorkflowRejection(response: Response, permission: 'read' | null = null) {
  expect(response.status).toBe(400);
  const { error } = await response.json();
  expect(error.code).toBe('bad_request');
  expect(error.message).toBe(
    rejectionMessage(permission === null ? 'no Workflows permission' : `Workflows: ${permission}`),
  );
  expect(error.workflowFiles).toEqual([workflowPath]);
  expect(error.workflowsPermission).toBe(permission);
}

/** Checks that `response` is one commit of both files on the head branch, and no review. */
async function expectCommit(response: Response) {
  expect(response.status).toBe(200);
  const result = await response.json();
  expect(result.mode).toBe('commit');
  expect(result.reviewId).toBeNull();
  expect(result.files).toEqual([workflowPath, 'app.txt']);
  const branchSha = await gitIn(setup, 'rev-parse', headBranch);
  expect(result.commitSha).toBe(branchSha);
  expect(await gitIn(setup, 'rev-parse', `${branchSha}^`)).toBe(setup.git.headSha);
  expect(await gitIn(setup, 'show', `${branchSha}:${workflowPath}`)).toBe(proposedWorkflow.trim());
  expect(await gitIn(setup, 'show', `${branchSha}:app.txt`)).toBe(proposedText.trim());
}

describe.each([
  { granted: 'no Workflows permission', permission: null },
  { granted: 'Workflows: read', permission: 'read' },
] as const)('apply of workflow files with $granted', ({ permission }) => {
  beforeAll(async () => {
    await acceptWorkflowsPermission(permission);
  });

  it('rejects mode commit before any write', async () => {
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);

    const response = await apply(request.id, { mode: 'commit' });

    await expectWorkflowRejection(response, permission);
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

describe('apply of workflow files with Workflows: write', () => {
  beforeAll(async () => {
    await acceptWorkflowsPermission('write');
  });

  it('commits by default', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;

    const response = await apply(request.id);

    await expectCommit(response);
    expect(setup.fake.reviews).toHaveLength(reviewsBefore);
  });

  it('commits in mode commit', async () => {
    const request = await newRequest();

    const response = await apply(request.id, { mode: 'commit' });

    await expectCommit(response);
  });

  it('posts suggestions in mode suggestions', async () => {
    const request = await newRequest();

    const response = await apply(request.id, { mode: 'suggestions' });

    await expectSuggestionReview(response);
  });

  it('commits a workflow file ready at the claim', async () => {
    const request = await newRequestReadyAtClaim();

    const response = await apply(request.id);

    await expectCommit(response);
  });
});

describe('apply after the Workflows permission is granted', () => {
  it('commits once new permissions are accepted', async () => {
    await acceptWorkflowsPermission(null);
    const before = await newRequest();
    await expectSuggestionReview(await apply(before.id));
    await resetApplyRun(setup, applyContext.runId);
    const request = await newRequest();
    const tokensBefore = countTokenRequests();

    const outcome = await acceptWorkflowsPermission('write');
    const response = await apply(request.id);

    expect(outcome).toBe(
      `installation ${setup.installationId} accepted new permissions; its next apply of a ` +
        'workflow file reads them from a new access token',
    );
    const [installation] = await setup.context.db
      .select({ permissionsChangedAt: installations.permissionsChangedAt })
      .from(installations)
      .where(eq(installations.id, setup.installationId));
    expect(installation!.permissionsChangedAt).toBeInstanceOf(Date);
    await expectCommit(response);
    expect(countTokenRequests()).toBe(tokensBefore + 1);
  });
});

describe('apply after a failed permission read', () => {
  it('rejects mode commit under the claim', async () => {
    // The event makes the next read request a new token, and the fake fails that request once.
    await acceptWorkflowsPermission(null);
    setup.fake.queueResponse({ method: 'POST', path: /\/access_tokens$/, status: 403 });
    const request = await newRequest();
    const writesBefore = countApplyWrites(setup);
    const tokensBefore = countTokenRequests();

    const response = await apply(request.id, { mode: 'commit' });

    await expectWorkflowRejection(response);
    await expectNothingApplied(setup, request.id, writesBefore);
    expect(countTokenRequests()).toBe(tokensBefore + 2);
    const unread = logsOf(setup.context, 'apply.workflows_permission_unread');
    expect(unread).toHaveLength(1);
    expect(unread[0]!.err).toMatchObject({ message: 'Forbidden - https://docs.github.com/rest', status: 403 });
    const rejected = setup.context.logs.filter((line) => line.msg === 'apply rejected').at(-1);
    expect(rejected?.event).toBe('apply.workflows_permission_missing');
  });
});

describe('apply of a workflow file ready at the claim', () => {
  beforeAll(async () => {
    await acceptWorkflowsPermission(null);
  });

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

/** Builds the start of the messages about GitHub's rejection of the workflow file's tree. */
function treeRejection(): string {
  return (
    `GitHub returned 403 "Resource not accessible by integration" for POST /repos/${owner}/` +
    `${repo}/git/trees. ${workflowPath} is a GitHub Actions workflow file, and GitHub accepts a ` +
    "GitHub App's commit to .github/workflows/ only with Workflows: write, which the " +
    "installation's access token claimed but GitHub no longer grants. The permission was " +
    'probably removed after the token was issued.'
  );
}

/** Counts the requests of `method` to the fake whose path matches `path`. */
const countRequests = (method: string, path: RegExp) =>
  setup.fake.requests.filter((request) => request.method === method && path.test(request.path)).length;

/** Reads the installation's stored time of its last permission change. */
async function permissionsChangedAt(): Promise<Date | null> {
  const [installation] = await setup.context.db
    .select({ permissionsChangedAt: installations.permissionsChangedAt })
    .from(installations)
    .where(eq(installations.id, setup.installationId));
  return installation!.permissionsChangedAt;
}

describe('apply after the Workflows permission is removed', () => {
  beforeEach(async () => {
    // A commit with Workflows: write caches a token that claims it. GitHub sends no webhook
    // when a permission is removed, so only the fake's installation changes.
    await acceptWorkflowsPermission('write');
    await expectCommit(await apply((await newRequest()).id));
    await resetApplyRun(setup, applyContext.runId);
    setup.fake.setInstallation({
      id: setup.installationId,
      account: { login: owner, id: 1, type: 'Organization' },
      permissions: { ...defaultPermissions },
    });
  });

  it('posts suggestions after the rejection', async () => {
    const request = await newRequest();
    const changedBefore = await permissionsChangedAt();
    const tokensBefore = countTokenRequests();
    const treesBefore = countRequests('POST', /\/git\/trees$/);
    const refUpdatesBefore = countRequests('PATCH', /\/git\/refs\//);

    const response = await apply(request.id);

    const note =
      `${treeRejection()} Nothing was committed, so the fixes of 2 files were posted as review ` +
      'suggestions instead. To commit workflow files, give the GitHub App the repository ' +
      "permission Workflows: read and write and have the installation's owner accept it.";
    const result = await response.clone().json();
    await expectSuggestionReview(response);
    expect(result.note).toBe(note);
    expect(result.files).toEqual([workflowPath, 'app.txt']);
    expect(countTokenRequests()).toBe(tokensBefore);
    expect(countRequests('POST', /\/git\/trees$/)).toBe(treesBefore + 1);
    expect(countRequests('PATCH', /\/git\/refs\//)).toBe(refUpdatesBefore);
    const [row] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(row!.applyMode).toBe('suggestions');
    expect(row!.appliedCommitSha).toBeNull();
    expect(row!.appliedReviewId).toBe(setup.fake.reviews.at(-1)!.id);
    expect(row!.appliedNote).toBe(note);
    expect(row!.applyStartedAt).toBeNull();
    const changedAfter = await permissionsChangedAt();
    expect(changedAfter!.getTime()).toBeGreaterThan(changedBefore!.getTime());
    const rejected = logsOf(setup.context, 'apply.workflows_rejected');
    expect(rejected.at(-1)).toMatchObject({
      installationId: setup.installationId,
      workflowFiles: [workflowPath],
      fallback: 'suggestions',
      github: { status: 403, method: 'POST', path: `/repos/${owner}/${repo}/git/trees` },
    });

    const stored = await (await apply(request.id)).json();
    expect(stored.alreadyApplied).toBe(true);
    expect(stored.note).toBe(note);
    const preview = await applyContext.app.request(`/api/patch-requests/${request.id}`, {
      headers: { authorization: `Bearer ${applyContext.user.token}` },
    });
    expect((await preview.json()).applied.note).toBe(note);
  });

  it('keeps the note after a crash', async () => {
    // The update that records the applied review fails, so the apply ends after the review was
    // posted and before anything else was stored, as when its process dies there.
    await setup.context.db.execute(sql.raw(`
      CREATE OR REPLACE FUNCTION test_fail_apply_record() RETURNS trigger AS $$
      BEGIN
        IF NEW.applied_at IS NOT NULL AND OLD.applied_at IS NULL THEN
          RAISE EXCEPTION 'the process died before it recorded the apply';
        END IF;
        RETURN NEW;
      END $$ LANGUAGE plpgsql;
      CREATE TRIGGER test_fail_apply_record BEFORE UPDATE ON patch_requests
        FOR EACH ROW EXECUTE FUNCTION test_fail_apply_record();`));
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const reviewPostsBefore = countRequests('POST', /\/pulls\/\d+\/reviews$/);
    const note =
      `${treeRejection()} Nothing was committed, so the fixes of 2 files were posted as review ` +
      'suggestions instead. To commit workflow files, give the GitHub App the repository ' +
      "permission Workflows: read and write and have the installation's owner accept it.";

    const crashed = await apply(request.id);

    expect(crashed.status).toBe(500);
    expect(setup.fake.reviews).toHaveLength(reviewsBefore + 1);
    const reviewId = setup.fake.reviews.at(-1)!.id;
    const [left] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(left!.appliedAt).toBeNull();
    expect(left!.applyStartedAt).not.toBeNull();
    expect(left!.appliedNote).toBe(note);

    // The claim of the dead call goes stale after 10 minutes, and then an apply takes it over.
    await setup.context.db.execute(
      sql`DROP TRIGGER IF EXISTS test_fail_apply_record ON patch_requests`,
    );
    await setup.context.db
      .update(patchRequests)
      .set({ applyStartedAt: new Date(Date.now() - 11 * 60_000) })
      .where(eq(patchRequests.id, request.id));
    const retried = await apply(request.id);

    expect(retried.status).toBe(200);
    const result = await retried.json();
    expect(result.alreadyApplied).toBe(false);
    expect(result.mode).toBe('suggestions');
    expect(result.reviewId).toBe(reviewId);
    expect(result.note).toBe(note);
    expect(setup.fake.reviews).toHaveLength(reviewsBefore + 1);
    expect(countRequests('POST', /\/pulls\/\d+\/reviews$/)).toBe(reviewPostsBefore + 1);
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
    const [row] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(row!.appliedAt).toBeInstanceOf(Date);
    expect(row!.applyMode).toBe('suggestions');
    expect(row!.appliedReviewId).toBe(reviewId);
    expect(row!.appliedNote).toBe(note);
    expect(row!.applyStartedAt).toBeNull();
  });

  it('drops the note of a failed fallback', async () => {
    // GitHub rejects the fallback review, so the apply fails after it stored its note.
    setup.fake.queueResponse({
      method: 'POST',
      path: /\/pulls\/\d+\/reviews$/,
      status: 422,
      body: { message: 'Validation Failed' },
    });
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;

    const failed = await apply(request.id);

    expect(failed.status).toBe(502);
    expect(setup.fake.reviews).toHaveLength(reviewsBefore);
    const [left] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(left!.appliedAt).toBeNull();
    expect(left!.applyStartedAt).toBeNull();
    expect(left!.appliedNote).toContain('were posted as review suggestions instead');

    // The next apply posts suggestions because the renewed token lacks Workflows: write, and
    // no commit of this apply was rejected, so it has no note.
    const response = await apply(request.id);

    const result = await response.clone().json();
    await expectSuggestionReview(response);
    expect(result.note).toBeNull();
    expect(setup.fake.reviews).toHaveLength(reviewsBefore + 1);
    const [row] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(row!.appliedAt).toBeInstanceOf(Date);
    expect(row!.appliedNote).toBeNull();
  });

  it('renews the token for the next apply', async () => {
    await apply((await newRequest()).id);
    await resetApplyRun(setup, applyContext.runId);
    const request = await newRequest();
    const tokensBefore = countTokenRequests();
    const treesBefore = countRequests('POST', /\/git\/trees$/);

    const response = await apply(request.id);

    const result = await response.clone().json();
    await expectSuggestionReview(response);
    expect(result.note).toBeNull();
    expect(countTokenRequests()).toBe(tokensBefore + 1);
    expect(countRequests('POST', /\/git\/trees$/)).toBe(treesBefore);
  });

  it('rejects mode commit after the rejection', async () => {
    const request = await newRequest();
    const reviewsBefore = setup.fake.reviews.length;
    const refUpdatesBefore = countRequests('PATCH', /\/git\/refs\//);

    const response = await apply(request.id, { mode: 'commit' });

    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.code).toBe('bad_request');
    expect(error.message).toBe(
      `Invalid mode "commit": ${treeRejection()} Nothing was committed. Use mode "suggestions" ` +
        'to post the fixes as a review, or give the GitHub App the repository permission ' +
        "Workflows: read and write and have the installation's owner accept it.",
    );
    expect(error.workflowFiles).toEqual([workflowPath]);
    expect(error.github).toMatchObject({ status: 403, method: 'POST' });
    expect(setup.fake.reviews).toHaveLength(reviewsBefore);
    expect(countRequests('PATCH', /\/git\/refs\//)).toBe(refUpdatesBefore);
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
    const [row] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(row!.applyStartedAt).toBeNull();
    expect(row!.appliedAt).toBeNull();
    expect(row!.applyUnconfirmedAt).toBeNull();
    expect(logsOf(setup.context, 'apply.workflows_rejected').at(-1)).toMatchObject({ fallback: 'none' });
    const rejected = setup.context.logs.filter((line) => line.msg === 'apply rejected').at(-1);
    expect(rejected?.event).toBe('apply.workflows_permission_rejected');

    const retried = await apply(request.id, { mode: 'commit' });
    expect(retried.status).toBe(400);
    expect((await retried.json()).error.workflowsPermission).toBeNull();
  });
});
