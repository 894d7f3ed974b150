import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { patchFiles, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { handlePullRequestEvent, pullRequestPayload } from '../../src/events/pull-request.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import type { TestContext } from '../helpers/context.ts';
import { insertReadyPatchRequest } from '../helpers/github-context.ts';
import {
  createRunWebTestContext,
  postApplyAsScript,
  type RunWebTestContext,
  type SignedInUser,
} from '../helpers/web.ts';
import {
  countJobs,
  examplePayload,
  examplePullRequestEvent,
  postSignedWebhook,
  waitForLockWait,
} from '../helpers/webhooks.ts';

const secret = 'closed-pull-request-web';
/** pull_request.closed_at of GitHub's example `closed` payload. */
const exampleClosedAt = '2019-05-15T15:21:18.000Z';
const checkRunId = 7301;

let web: RunWebTestContext;
let context: TestContext;
let app: RunWebTestContext['app'];
let user: SignedInUser;
let apiToken: string;
let setup: RunWebTestContext['setup'];
let delivery = 0;

function closedMessage(): string {
  return (
    `Pull request ${setup.run.repository}#${setup.run.prNumber} is closed. Reopen it on ` +
    'GitHub to request or apply fixes.'
  );
}

/** GitHub's example `pull_request` payload for `action`, moved to the run's pull request. */
function pullRequestEvent(action: 'closed' | 'reopened'): Record<string, any> {
  const payload = examplePullRequestEvent(action, {
    installationId: setup.installationId,
    repositoryId: setup.run.repositoryId,
    repository: setup.run.repository,
    number: setup.run.prNumber,
  });
  // At another head the reopened event would create a run that supersedes this one.
  payload.pull_request.head.sha = setup.run.headSha;
  // GitHub's example `reopened` payload is older than its `closed` one. A reopen comes after
  // the close, and a reopen older than the close keeps the pull request closed.
  if (action === 'reopened') payload.pull_request.updated_at = '2019-05-15T15:30:00Z';
  return payload;
}

/** Delivers a signed webhook and returns the outcome that the endpoint reports. */
async function deliver(event: string, payload: Record<string, unknown>): Promise<string> {
  const response = await postSignedWebhook(app, {
    secret,
    event,
    deliveryId: `closed-web-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { outcome: string }).outcome;
}

function getPage(path: string) {
  return app.request(path, { headers: { cookie: user.cookie } });
}

/** Inserts a ready preview of one file of the run and returns it with that file. */
async function readyPreview() {
  const request = await insertReadyPatchRequest(context, {
    runId: setup.run.id,
    userId: user.userId,
    files: [{ path: 'src/a.ts', originalText: 'a\n', proposedText: 'b\n' }],
    withFindings: true,
  });
  const [file] = await context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, request.id));
  return { request, file: file! };
}

beforeEach(async () => {
  web = await createRunWebTestContext({ webhookSecret: secret, login: 'closed-owner' });
  ({ context, app, user, apiToken, setup } = web);
});

afterEach(async () => {
  await context?.close();
});

describe('patch request API', () => {
  it('rejects a closed pull request', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));

    const response = await web.postPatchRequest();

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: Record<string, unknown> };
    expect(body.error.code).toBe('conflict');
    expect(body.error.message).toBe(closedMessage());
    expect(body.error.repository).toBe(setup.run.repository);
    expect(body.error.pullRequest).toBe(setup.run.prNumber);
    expect(body.error.pullRequestClosedAt).toBe(exampleClosedAt);
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('accepts work again after reopen', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));
    expect((await web.postPatchRequest()).status).toBe(409);

    const reopened = await deliver('pull_request', pullRequestEvent('reopened'));
    const response = await web.postPatchRequest();

    expect(reopened).toBe(
      `pull request reopened: marked 1 run(s) open; the run for ${setup.run.repository}` +
        `#${setup.run.prNumber} at ${setup.run.headSha} stays completed`,
    );
    expect(response.status).toBe(202);
    const { id } = (await response.json()) as { id: string };
    const [stored] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, id));
    expect(stored!.status).toBe('queued');
    expect(await countJobs(context, previewQueue)).toBe(1);
  });

  it('reports the close time of a run', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));

    const response = await app.request(`/api/runs/${setup.run.id}`, {
      headers: { authorization: `Bearer ${apiToken}` },
    });

    const body = (await response.json()) as Record<string, unknown>;
    expect(body.status).toBe('completed');
    expect(body.pullRequestClosedAt).toBe(exampleClosedAt);
  });

  it('reports the close time of a preview', async () => {
    const { request } = await readyPreview();
    const read = async () => {
      const response = await app.request(`/api/patch-requests/${request.id}`, {
        headers: { authorization: `Bearer ${apiToken}` },
      });
      expect(response.status).toBe(200);
      return (await response.json()) as Record<string, unknown>;
    };
    expect((await read()).pullRequestClosedAt).toBeNull();

    await deliver('pull_request', pullRequestEvent('closed'));
    const closed = await read();
    await deliver('pull_request', pullRequestEvent('reopened'));
    const reopened = await read();

    expect(closed.status).toBe('ready');
    expect(closed.pullRequestClosedAt).toBe(exampleClosedAt);
    expect(reopened.pullRequestClosedAt).toBeNull();
  });
});

describe('Preview fix form', () => {
  it('shows the message in the htmx target', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));
    const findingIds = setup.findings.map((finding) => finding.id);

    const response = await web.postForm(`/runs/${setup.run.id}/patch-requests`, { findingIds }, true);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).toMatch(/^<div class="error" role="alert">/);
    expect(html).toContain('<strong>Error 409: </strong>');
    expect(html).toContain(closedMessage());
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });
});

describe('Preview fix without JavaScript', () => {
  it('shows the message on the run page', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));
    const findingIds = setup.findings.map((finding) => finding.id);

    const response = await web.postForm(`/runs/${setup.run.id}/patch-requests`, { findingIds }, false);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain(`<p class="notice pull-request-closed">${closedMessage()}</p>`);
    expect(html).toContain(
      `<div id="preview-progress" aria-live="polite"><p class="error" role="alert">${closedMessage()}</p></div>`,
    );
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });
});

/** Returns the `previewVersion` of the Apply form on the preview page of `id`. */
async function formVersion(id: string): Promise<string> {
  const html = await (await getPage(`/patch-requests/${id}`)).text();
  const version = /<input type="hidden" name="previewVersion" value="([^"]*)"/.exec(html)?.[1];
  expect(version).toBeDefined();
  return version!;
}

describe('Apply', () => {
  it('shows the preview page without JavaScript', async () => {
    const { request } = await readyPreview();
    await deliver('pull_request', pullRequestEvent('closed'));
    const previewVersion = await formVersion(request.id);

    const response = await web.postForm(`/patch-requests/${request.id}/apply`, { previewVersion }, false);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain('<h1>Fix preview</h1>');
    expect(html).toContain(`<p class="notice pull-request-closed">${closedMessage()}</p>`);
    expect(html).toContain(
      `<div class="form-rejection"><p class="error" role="alert">HTTP 409: ${closedMessage()}</p>` +
        '<details><summary>Response</summary><pre class="json">',
    );
    expect(html).toContain(`&quot;pullRequestClosedAt&quot;: &quot;${exampleClosedAt}&quot;`);
    expect(html).toMatch(/<button type="submit" class="primary" disabled="">\s*Apply/);
    const [stored] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(stored!.appliedAt).toBeNull();
    expect(stored!.applyStartedAt).toBeNull();
  });

  it('keeps the JSON answer for htmx', async () => {
    const { request } = await readyPreview();
    await deliver('pull_request', pullRequestEvent('closed'));
    const previewVersion = await formVersion(request.id);

    const response = await postApplyAsScript(app, user, request.id, { previewVersion });

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: Record<string, unknown> };
    expect(body.error.code).toBe('conflict');
    expect(body.error.message).toBe(closedMessage());
    expect(body.error.pullRequestClosedAt).toBe(exampleClosedAt);
  });
});

describe('dashboard', () => {
  it('shows a closed run without Preview fix', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));

    const html = await (await getPage(`/runs/${setup.run.id}`)).text();

    expect(html).toContain('<span class="badge status-closed"');
    expect(html).toContain('pull request closed');
    expect(html).toContain(closedMessage());
    expect(html).not.toContain('Preview fix</button>');
  });

  it('shows Preview fix again after reopen', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));
    await deliver('pull_request', pullRequestEvent('reopened'));

    const html = await (await getPage(`/runs/${setup.run.id}`)).text();

    expect(html).not.toContain('status-closed');
    expect(html).not.toContain(closedMessage());
    expect(html).toContain('Preview fix</button>');
  });

  it('marks the run closed on the home page', async () => {
    await deliver('pull_request', pullRequestEvent('closed'));

    const html = await (await getPage('/')).text();

    expect(html).toContain(`${setup.run.repository}#${setup.run.prNumber}`);
    expect(html).toContain('<span class="badge status-closed"');
  });

  it('shows a preview without Regenerate and Apply', async () => {
    const { request } = await readyPreview();
    await deliver('pull_request', pullRequestEvent('closed'));

    const html = await (await getPage(`/patch-requests/${request.id}`)).text();

    expect(html).toContain(closedMessage());
    expect(html).toContain('<span class="badge status-closed"');
    expect(html).not.toContain('Regenerate this file');
    expect(html).toMatch(/<button type="submit" class="primary" disabled="">\s*Apply/);
  });
});

describe('regenerate file', () => {
  it('rejects a closed pull request', async () => {
    const { request, file } = await readyPreview();
    await deliver('pull_request', pullRequestEvent('closed'));

    const path = `/patch-requests/${request.id}/files/${file.id}/regenerate`;
    const response = await web.postForm(path, {}, true);

    expect(response.status).toBe(409);
    // The files panel comes back as it is now, without "Regenerate this file", and with the
    // message next to the file.
    expect(response.headers.get('hx-retarget')).toBe('#patch-files');
    const html = await response.text();
    expect(html).toMatch(/^<div id="patch-files" data-status="ready"/);
    expect(html).toContain(
      `<div class="regenerate-result" id="regenerate-result-${file.id}" aria-live="polite">` +
        `<p class="error" role="alert">${closedMessage()}</p></div>`,
    );
    expect(html).not.toContain('Regenerate this file');
    const [storedFile] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(storedFile!.status).toBe('ready');
    expect(storedFile!.generation).toBe(file.generation);
    expect(storedFile!.proposedText).toBe('b\n');
    const [storedRequest] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(storedRequest!.status).toBe('ready');
    expect(storedRequest!.previewJobId).toBeNull();
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('shows the preview page without JavaScript', async () => {
    const { request, file } = await readyPreview();
    await deliver('pull_request', pullRequestEvent('closed'));

    const path = `/patch-requests/${request.id}/files/${file.id}/regenerate`;
    const response = await web.postForm(path, {}, false);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain('<h1>Fix preview</h1>');
    expect(html).toContain(
      `<div class="form-rejection"><p class="error" role="alert">${closedMessage()}</p></div>`,
    );
    const [storedFile] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(storedFile!.generation).toBe(file.generation);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('regenerates again after reopen', async () => {
    const { request, file } = await readyPreview();
    await deliver('pull_request', pullRequestEvent('closed'));
    await deliver('pull_request', pullRequestEvent('reopened'));

    const path = `/patch-requests/${request.id}/files/${file.id}/regenerate`;
    const response = await web.postForm(path, {}, true);

    expect(response.status).toBe(200);
    const [storedFile] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(storedFile!.generation).toBe(file.generation + 1);
    expect(await countJobs(context, previewQueue)).toBe(1);
  });
});

describe('Fix with AI', () => {
  it('skips a closed pull request', async () => {
    await context.db
      .update(prRuns)
      .set({ checkRunId, reportedAt: new Date() })
      .where(eq(prRuns.id, setup.run.id));
    await deliver('pull_request', pullRequestEvent('closed'));
    const pressed = examplePayload('check_run', 'requested_action', setup.installationId);
    pressed.check_run.id = checkRunId;
    pressed.repository.id = setup.run.repositoryId;
    pressed.requested_action = { identifier: 'fix' };

    const outcome = await deliver('check_run', pressed);

    expect(outcome).toBe(`skipped: ${closedMessage()}`);
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });
});

describe('concurrent close', () => {
  it('makes a new patch request wait and reject', async () => {
    // The close has marked the runs but not committed when the request arrives.
    let requestSent!: Promise<Response>;
    await context.db.transaction(async (tx) => {
      const payload = pullRequestPayload.parse(pullRequestEvent('closed'));
      await handlePullRequestEvent(tx, context.boss, payload);
      requestSent = Promise.resolve(web.postPatchRequest());
      await waitForLockWait(context);
    });
    const response = await requestSent;

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toBe(closedMessage());
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('cancels a patch request committed while it waits', async () => {
    let closing!: Promise<string>;
    let patchRequestId = '';

    // The patch request has checked the run but not committed when the close arrives.
    await context.db.transaction(async (tx) => {
      const created = await createPatchRequest(tx, context.boss, {
        runId: setup.run.id,
        userId: user.userId,
        findingIds: setup.findings.map((finding) => finding.id),
      });
      if (!created.ok) throw new Error(`patch request not created: ${created.reason}`);
      patchRequestId = created.id;
      closing = deliver('pull_request', pullRequestEvent('closed'));
      await waitForLockWait(context);
    });
    const outcome = await closing;

    expect(outcome).toBe(
      'pull request closed: marked 1 run(s) closed, cancelled 0 run(s) and 1 patch request(s)',
    );
    const [stored] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(stored!.status).toBe('cancelled');
    expect(stored!.error).toBe(
      `Cancelled because pull request ${setup.run.repository}#${setup.run.prNumber} was ` +
        'closed. Reopen it on GitHub, then request the fix again.',
    );
    const job = await context.boss.getJobById(previewQueue, stored!.previewJobId!);
    expect(job?.state).toBe('cancelled');
  });

  it('makes a regeneration wait and reject', async () => {
    const { request, file } = await readyPreview();
    let regenerated!: Promise<Response>;
    await context.db.transaction(async (tx) => {
      const payload = pullRequestPayload.parse(pullRequestEvent('closed'));
      await handlePullRequestEvent(tx, context.boss, payload);
      const path = `/patch-requests/${request.id}/files/${file.id}/regenerate`;
      regenerated = Promise.resolve(web.postForm(path, {}, true));
      await waitForLockWait(context);
    });
    const response = await regenerated;

    expect(response.status).toBe(409);
    expect(await response.text()).toContain(closedMessage());
    const [storedFile] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(storedFile!.generation).toBe(file.generation);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });
});
