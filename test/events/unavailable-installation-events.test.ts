import { count, eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import {
  patchRequests,
  prRuns,
  webhookDeliveries,
} from '../../src/db/schema/index.ts';
import { handleInstallationEvent, installationPayload } from '../../src/events/installation.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { testPlatformKeys, createTestContext, type TestContext } from '../helpers/context.ts';
import {
  insertFindings,
  insertInstallation,
  insertRun,
  insertUser,
  repositoryId,
} from '../helpers/github-context.ts';
import {
  countJobs,
  examplePayload,
  postSignedWebhook,
  waitForLockWait,
} from '../helpers/webhooks.ts';

const secret = 'unavailable-installation-events';
const installationId = 6401;
const checkRunId = 6402;

let context: TestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;

/** Account login that insertInstallation gives the installation. */
const account = 'octo-org';

function suspendedMessage(): string {
  return (
    `GitHub App installation ${installationId} on ${account} is suspended. An owner of ` +
    `${account} must unsuspend it in the GitHub App settings on GitHub before Fixwright can ` +
    'work there again.'
  );
}

function uninstalledMessage(): string {
  return (
    `GitHub App installation ${installationId} on ${account} no longer exists because the app ` +
    `was uninstalled. Install the app on ${account} again on GitHub before Fixwright can work ` +
    'there again.'
  );
}

/** Delivers a signed payload and returns the HTTP status, the body and the stored outcome. */
async function deliver(event: string, payload: Record<string, unknown>) {
  const deliveryId = `unavailable-events-${delivery++}`;
  const response = await postSignedWebhook(app, { secret, event, deliveryId, payload });
  const body = (await response.json()) as Record<string, unknown>;
  const [row] = await context.db
    .select()
    .from(webhookDeliveries)
    .where(eq(webhookDeliveries.deliveryId, deliveryId));
  return { status: response.status, body, storedOutcome: row?.outcome };
}

/** GitHub's requested_action example for the "Fix with AI" button of `checkRunId`. */
function fixRequested(): Record<string, any> {
  const payload = examplePayload('check_run', 'requested_action', installationId);
  payload.check_run.id = checkRunId;
  payload.repository.id = repositoryId;
  payload.requested_action = { identifier: 'fix' };
  return payload;
}

/** Creates the installation's owner and a completed run whose check run has the fix button. */
async function completedRunWithCheckRun() {
  const owner = await insertUser(context);
  await insertInstallation(context, { id: installationId, userId: owner.id });
  const run = await insertRun(context, {
    installationId,
    headSha: 'c'.repeat(40),
    baseSha: 'b'.repeat(40),
  });
  await context.db
    .update(prRuns)
    .set({ checkRunId, reportedAt: new Date() })
    .where(eq(prRuns.id, run.id));
  const rows = await insertFindings(context, run.id, [
    { path: 'src/app.ts', line: 3, severity: 'warning' },
  ]);
  return { owner, run, findingIds: rows.map((row) => row.id) };
}

async function countPatchRequests(): Promise<number> {
  const [row] = await context.db.select({ value: count() }).from(patchRequests);
  return row!.value;
}

async function countRuns(): Promise<number> {
  const [row] = await context.db.select({ value: count() }).from(prRuns);
  return row!.value;
}

beforeEach(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret, ...testPlatformKeys });
  app = createApp(context);
});

afterEach(async () => {
  await context?.close();
});

describe('check_run requested_action', () => {
  it('skips a suspended installation', async () => {
    await completedRunWithCheckRun();
    const suspended = await deliver('installation', examplePayload('installation', 'suspend', installationId));
    expect(suspended.status).toBe(202);

    const pressed = await deliver('check_run', fixRequested());

    expect(pressed.status).toBe(202);
    expect(pressed.body.outcome).toBe(`skipped: ${suspendedMessage()}`);
    expect(pressed.storedOutcome).toBe(`skipped: ${suspendedMessage()}`);
    expect(await countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('queues a preview again after unsuspend', async () => {
    const { owner, run } = await completedRunWithCheckRun();
    await deliver('installation', examplePayload('installation', 'suspend', installationId));
    expect((await deliver('check_run', fixRequested())).storedOutcome).toMatch(/^skipped: /);

    const resumed = await deliver('installation', examplePayload('installation', 'unsuspend', installationId));
    const pressed = await deliver('check_run', fixRequested());

    expect(resumed.storedOutcome).toBe(`installation ${installationId} resumed`);
    expect(pressed.status).toBe(202);
    const requests = await context.db.select().from(patchRequests);
    expect(requests).toHaveLength(1);
    expect(requests[0]!.status).toBe('queued');
    expect(pressed.storedOutcome).toBe(
      `patch request ${requests[0]!.id} queued for run ${run.id} with 1 finding, ` +
        `paid by user ${owner.id}`,
    );
    expect(await countJobs(context, previewQueue)).toBe(1);
  });
});

describe('pull_request opened', () => {
  it('skips a deleted installation', async () => {
    await insertInstallation(context, { id: installationId });
    const deleted = await deliver('installation', examplePayload('installation', 'deleted', installationId));
    expect(deleted.status).toBe(202);

    const opened = await deliver('pull_request', examplePayload('pull_request', 'opened', installationId));

    expect(opened.status).toBe(202);
    expect(opened.body.outcome).toBe(`skipped: ${uninstalledMessage()}`);
    expect(opened.storedOutcome).toBe(`skipped: ${uninstalledMessage()}`);
    expect(await countRuns()).toBe(0);
    expect(await countJobs(context, analyzeQueue)).toBe(0);
  });

  it('queues a run again after reinstall', async () => {
    await insertInstallation(context, { id: installationId });
    await deliver('installation', examplePayload('installation', 'deleted', installationId));
    await deliver('pull_request', examplePayload('pull_request', 'opened', installationId));

    // The reinstall names the account that insertInstallation stored, as GitHub's would.
    const reinstalled = examplePayload('installation', 'created', installationId);
    reinstalled.installation.account = { ...reinstalled.installation.account, id: 1, login: 'octo-org' };
    await deliver('installation', reinstalled);
    const opened = await deliver('pull_request', examplePayload('pull_request', 'opened', installationId));

    const runs = await context.db.select().from(prRuns);
    expect(runs).toHaveLength(1);
    expect(opened.storedOutcome).toBe(`run ${runs[0]!.id} queued`);
    expect(await countJobs(context, analyzeQueue)).toBe(1);
  });
});

describe('concurrent suspend', () => {
  it('makes new work wait and reject', async () => {
    const { owner, findingIds, run } = await completedRunWithCheckRun();
    const { token } = await mintApiToken(context.db, owner.id, 'tests');
    // The suspend has updated the installation but not committed when the request arrives.
    let requestSent!: Promise<Response>;
    await context.db.transaction(async (tx) => {
      const payload = installationPayload.parse(
        examplePayload('installation', 'suspend', installationId),
      );
      await handleInstallationEvent(tx, context.boss, payload, context);
      requestSent = Promise.resolve(
        app.request(`/api/runs/${run.id}/patch-requests`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ findingIds }),
        }),
      );
      await waitForLockWait(context);
    });
    const response = await requestSent;

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toBe(suspendedMessage());
    expect(await countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('cancels work committed while it waits', async () => {
    const { owner, findingIds, run } = await completedRunWithCheckRun();
    let suspension!: ReturnType<typeof deliver>;
    let patchRequestId = '';

    // The patch request has checked the installation but not committed when GitHub suspends it.
    await context.db.transaction(async (tx) => {
      const created = await createPatchRequest(tx, context.boss, {
        runId: run.id,
        userId: owner.id,
        findingIds,
      });
      if (!created.ok) throw new Error(`patch request not created: ${created.reason}`);
      patchRequestId = created.id;
      suspension = deliver('installation', examplePayload('installation', 'suspend', installationId));
      await waitForLockWait(context);
    });
    const suspended = await suspension;

    expect(suspended.status).toBe(202);
    expect(suspended.storedOutcome).toBe(
      `installation ${installationId} marked suspended; ` +
        'cancelled 0 run(s), 0 report(s) and 1 patch request(s)',
    );
    const [stored] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(stored!.status).toBe('cancelled');
    expect(stored!.error).toContain(`installation ${installationId}`);
    expect(stored!.error).toContain('was suspended');
    const job = await context.boss.getJobById(previewQueue, stored!.previewJobId!);
    expect(job?.state).toBe('cancelled');
  });
});
