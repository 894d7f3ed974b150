// A push that supersedes a run while a new patch request for it waits for the run's row lock:
// the request is rejected as the route's own check would reject it, and nothing is queued.
// A failed run gets a 409 whose message gives the steps to analyze the pull request again.
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { createRunWebTestContext, type RunWebTestContext } from '../helpers/web.ts';
import { countJobs, examplePullRequestEvent, waitForLockWait } from '../helpers/webhooks.ts';

let web: RunWebTestContext;

beforeEach(async () => {
  web = await createRunWebTestContext({ webhookSecret: 'concurrent-push', login: 'push-owner' });
});

afterEach(async () => {
  await web?.context.close();
});

/**
 * Handles a `synchronize` event for a newer head of the run's pull request in a transaction,
 * and sends `request` before that transaction commits. Returns the response once the
 * transaction has committed.
 */
async function pushWhile(request: () => Promise<Response>): Promise<Response> {
  const { context, setup } = web;
  const payload = examplePullRequestEvent('synchronize', {
    installationId: setup.installationId,
    repositoryId: setup.run.repositoryId,
    repository: setup.run.repository,
    number: setup.run.prNumber,
  });
  payload.pull_request.head.sha = 'c'.repeat(40);
  let sent!: Promise<Response>;
  await context.db.transaction(async (tx) => {
    await handlePullRequestEvent(tx, context.boss, pullRequestPayload.parse(payload));
    sent = request();
    await waitForLockWait(context);
  });
  const [run] = await context.db.select().from(prRuns).where(eq(prRuns.id, setup.run.id));
  expect(run!.status).toBe('superseded');
  return sent;
}

describe('patch request during a push', () => {
  it('answers the API with the superseded 409', async () => {
    const response = await pushWhile(() => web.postPatchRequest());

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('conflict');
    const [newer] = await web.context.db.select().from(prRuns).where(eq(prRuns.headSha, 'c'.repeat(40)));
    expect(newer).toBeDefined();
    expect(body.error.message).toBe(
      `Run ${web.setup.run.id} is superseded by a newer commit, whose run ${newer!.id} is being ` +
        `analyzed; request fixes on run ${newer!.id} once it has completed.`,
    );
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(web.context, previewQueue)).toBe(0);
  });

  it('answers the form with the superseded 409', async () => {
    const fields = { findingIds: web.setup.findings.map((finding) => finding.id) };
    const path = `/runs/${web.setup.run.id}/patch-requests`;

    const response = await pushWhile(() => web.postForm(path, fields, false));

    expect(response.status).toBe(409);
    expect(await response.text()).toContain(
      'This run is superseded by a newer commit; request fixes on the newest run.',
    );
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(web.context, previewQueue)).toBe(0);
  });
});

describe('preview fix on a failed run', () => {
  it('says how to analyze it again', async () => {
    const { context, setup } = web;
    await context.db.update(prRuns).set({ status: 'failed' }).where(eq(prRuns.id, setup.run.id));
    const fields = { findingIds: setup.findings.map((finding) => finding.id) };

    const response = await web.postForm(`/runs/${setup.run.id}/patch-requests`, fields, false);

    expect(response.status).toBe(409);
    expect(await response.text()).toContain(
      'This run is failed, so it has no findings to fix; push a commit or redeliver the ' +
        'pull_request event to analyze the pull request again.',
    );
    expect(await web.countPatchRequests()).toBe(0);
  });
});
