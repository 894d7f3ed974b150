import { createHmac, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { count, eq } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  installations,
  patchFiles,
  patchRequests,
  prRuns,
  tokenEvents,
  tokenReservations,
  users,
} from '../../src/db/schema/index.ts';
import { analyzeQueue, handleAnalyzeJob, type AnalyzeJobData } from '../../src/jobs/analyze.ts';
import { applyQueue, type ApplyJobData } from '../../src/jobs/apply.ts';
import { confirmPullRequestQueue } from '../../src/jobs/confirm-pull-request-queue.ts';
import {
  fixPressNoticeQueue,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { handlePreviewJob, previewQueue, type PreviewJobData } from '../../src/jobs/preview.ts';
import { reportQueue } from '../../src/jobs/report.ts';
import { describeInstallationCancel } from '../../src/runs/cancel-installation-work.ts';
import { createApp } from '../../src/web/app.tsx';
import { createSession } from '../../src/web/session/session-store.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import {
  createGitHubTestContext,
  insertFindings,
  insertInstallation,
  insertReadyPatchRequest,
  insertRun,
  insertUser,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

const secret = 'installation-cancel-secret';
const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];

let setup: GitHubTestContext;
let groq: FakeGroq;
let app: ReturnType<typeof createApp>;
let owner: Awaited<ReturnType<typeof insertUser>>;
let delivery = 0;

/** Returns a payload from GitHub's webhook examples with this test's installation id. */
function example(event: string, action: string): Record<string, any> {
  const payload = structuredClone(
    examples
      .find((entry) => entry.name === event)!
      .examples.find((candidate) => candidate.action === action)!,
  );
  payload.installation = { ...payload.installation, id: setup.installationId };
  return payload;
}

/** Posts a payload signed as GitHub signs it and returns the HTTP status and JSON body. */
async function deliver(
  event: string,
  payload: Record<string, unknown>,
  deliveryId = `installation-cancel-${delivery++}`,
) {
  const body = JSON.stringify(payload);
  const response = await app.request('/webhooks/github', {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': deliveryId,
      'x-hub-signature-256': 'sha256=' + createHmac('sha256', secret).update(body).digest('hex'),
    },
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

/** Creates a queued run through a pull_request webhook, so its analyze job is queued too. */
async function queuedRun() {
  const opened = await deliver('pull_request', example('pull_request', 'opened'));
  expect(opened.status).toBe(202);
  const [run] = await setup.context.db
    .select()
    .from(prRuns)
    .where(eq(prRuns.repository, 'Codertocat/Hello-World'));
  return run!;
}

/** Creates a preview through the API on a reported run, so its preview job is queued too. */
async function queuedPreview() {
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
  });
  await setup.context.db
    .update(prRuns)
    .set({ reportedAt: new Date() })
    .where(eq(prRuns.id, run.id));
  const selected = await insertFindings(setup.context, run.id, [
    { path: 'src/a.ts', line: 1, severity: 'warning' },
    { path: 'src/b.ts', line: 1, severity: 'warning' },
  ]);
  const response = await app.request(`/api/runs/${run.id}/patch-requests`, {
    method: 'POST',
    headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ findingIds: selected.map((finding) => finding.id) }),
  });
  expect(response.status).toBe(202);
  const { id } = (await response.json()) as { id: string };
  return { run, request: await patchRequestById(id) };
}

async function runById(id: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, id));
  return run!;
}

async function patchRequestById(id: string) {
  const [request] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  return request!;
}

async function installationRow() {
  const [row] = await setup.context.db
    .select()
    .from(installations)
    .where(eq(installations.id, setup.installationId));
  return row!;
}

async function jobState(queue: string, id: string | null) {
  expect(id).not.toBeNull();
  return (await setup.context.boss.getJobById(queue, id!))?.state;
}

/** Reads the user's allowance columns and counts their reservation and ledger rows. */
async function allowanceOf(userId: string) {
  const [user] = await setup.context.db
    .select({ tokensUsed: users.tokensUsed, tokensReserved: users.tokensReserved })
    .from(users)
    .where(eq(users.id, userId));
  const [reservations] = await setup.context.db
    .select({ value: count() })
    .from(tokenReservations)
    .where(eq(tokenReservations.userId, userId));
  const [ledger] = await setup.context.db
    .select({ value: count() })
    .from(tokenEvents)
    .where(eq(tokenEvents.userId, userId));
  return { ...user!, reservations: reservations!.value, ledgerRows: ledger!.value };
}

/**
 * Creates a completed and reported run of installation `installationId` on commit `headSha`,
 * and queues three "Fix with AI" notice jobs of it. They show a queued preview, point a press
 * on an earlier check run to the newest one, and wait for a rate limit, which the run's page
 * shows.
 */
async function runWithNotices(installationId: number, headSha: string) {
  const run = await insertRun(setup.context, { installationId, headSha, baseSha: setup.git.baseSha });
  const press = { runId: run.id, checkRunId: 7001, pressedAt: Date.now(), sender: 'a-reviewer' };
  const queued: FixPressNoticeJobData = {
    ...press,
    notice: { kind: 'queued', patchRequestId: randomUUID(), files: 1, leftOutFiles: 0 },
  };
  const earlier: FixPressNoticeJobData = { ...press, checkRunId: 7000, notice: { kind: 'earlier_analysis' } };
  const waiting: FixPressNoticeJobData = { ...press, notice: { kind: 'no_findings' }, rateLimitedSince: Date.now() };
  const jobIds = [
    (await setup.context.boss.send(fixPressNoticeQueue, queued))!,
    (await setup.context.boss.send(fixPressNoticeQueue, earlier))!,
    (await setup.context.boss.send(fixPressNoticeQueue, waiting, { startAfter: 600 }))!,
  ];
  await setup.context.db
    .update(prRuns)
    .set({
      reportedAt: new Date(),
      checkRunId: 7001,
      rateLimitedUntil: new Date(Date.now() + 600_000),
      rateLimitedJobId: jobIds[2]!,
      rateLimitedQueue: fixPressNoticeQueue,
    })
    .where(eq(prRuns.id, run.id));
  return { run, jobIds };
}

function suspendReason() {
  return describeInstallationCancel({
    id: setup.installationId,
    accountLogin: 'Codertocat',
    actorLogin: 'Codertocat',
    cause: 'suspended',
  });
}

beforeEach(async () => {
  groq = await startFakeGroq();
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n", 'src/b.ts': "console.log('b');\n" },
    env: {
      WEBHOOK_SECRET: secret,
      GROQ_API_KEY: 'gsk_installation_cancel',
      GROQ_BASE_URL: groq.url,
      LLM_MAX_RETRIES: '0',
      PREVIEW_FILE_CONCURRENCY: '1',
    },
  });
  app = createApp(setup.context);
  owner = await insertUser(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId, userId: owner.id });
});

afterEach(async () => {
  await setup?.close();
  await groq?.close();
});

describe('installation suspend', () => {
  it('cancels a queued run and preview', async () => {
    const run = await queuedRun();
    const { request } = await queuedPreview();
    expect(await jobState(analyzeQueue, run.analyzeJobId)).toBe('created');
    expect(await jobState(previewQueue, request.previewJobId)).toBe('created');
    const allowanceBefore = await allowanceOf(owner.id);

    const suspended = await deliver('installation', example('installation', 'suspend'));

    expect(suspended.status).toBe(202);
    expect(suspended.body.outcome).toBe(
      `installation ${setup.installationId} marked suspended; ` +
        'cancelled 1 run(s), 0 report(s) and 1 patch request(s)',
    );
    const reason = suspendReason();
    expect(reason).toContain(`installation ${setup.installationId} on Codertocat was suspended`);
    expect(reason).toContain('must unsuspend it');
    const storedRun = await runById(run.id);
    expect(storedRun.status).toBe('cancelled');
    expect(storedRun.error).toBe(reason);
    const storedRequest = await patchRequestById(request.id);
    expect(storedRequest.status).toBe('cancelled');
    expect(storedRequest.error).toBe(reason);
    expect(storedRequest.completedAt).not.toBeNull();
    expect(await jobState(analyzeQueue, run.analyzeJobId)).toBe('cancelled');
    expect(await jobState(previewQueue, request.previewJobId)).toBe('cancelled');
    expect(await setup.context.boss.fetch(analyzeQueue)).toEqual([]);
    expect(await setup.context.boss.fetch(previewQueue)).toEqual([]);
    expect((await installationRow()).suspendedAt).not.toBeNull();

    const allowanceAfter = await allowanceOf(owner.id);
    expect(allowanceAfter).toEqual(allowanceBefore);
    expect(allowanceAfter.ledgerRows).toBe(0);
    expect(allowanceAfter.reservations).toBe(0);
    expect(allowanceAfter.tokensReserved).toBe(0);
    expect(groq.requests).toHaveLength(0);
  });

  it('cancels the report of a completed run', async () => {
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
      status: 'queued',
    });
    const job = { id: randomUUID(), data: { runId: run.id }, retryCount: 0, retryLimit: 4 };
    await handleAnalyzeJob(setup.context, job as PgBoss.JobWithMetadata<AnalyzeJobData>);
    const analyzed = await runById(run.id);
    expect(analyzed.status).toBe('completed');
    expect(await jobState(reportQueue, analyzed.reportJobId)).toBe('created');

    const suspended = await deliver('installation', example('installation', 'suspend'));

    expect(suspended.body.outcome).toBe(
      `installation ${setup.installationId} marked suspended; ` +
        'cancelled 0 run(s), 1 report(s) and 0 patch request(s)',
    );
    const stored = await runById(run.id);
    expect(stored.status).toBe('completed');
    expect(stored.error).toBeNull();
    expect(stored.reportError).toBe(
      `The check run and summary comment were not posted. ${suspendReason()}`,
    );
    expect(await jobState(reportQueue, analyzed.reportJobId)).toBe('cancelled');
    expect(setup.fake.checkRuns).toHaveLength(0);
  });

  it('cancels an apply waiting for a rate limit', async () => {
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
    });
    await setup.context.db.update(prRuns).set({ reportedAt: new Date() }).where(eq(prRuns.id, run.id));
    const request = await insertReadyPatchRequest(setup.context, {
      runId: run.id,
      userId: owner.id,
      files: [{ path: 'src/a.ts', originalText: "console.log('a');\n", proposedText: '' }],
    });
    const data: ApplyJobData = { patchRequestId: request.id, userId: owner.id, rateLimitedSince: Date.now() };
    const jobId = await setup.context.boss.send(applyQueue, data, { startAfter: 600 });
    await setup.context.db
      .update(patchRequests)
      .set({ applyJobId: jobId, applyRateLimitedUntil: new Date(Date.now() + 600_000) })
      .where(eq(patchRequests.id, request.id));

    const suspended = await deliver('installation', example('installation', 'suspend'));

    expect(suspended.body.outcome).toBe(
      `installation ${setup.installationId} marked suspended; ` +
        'cancelled 0 run(s), 0 report(s), 0 patch request(s) and 1 apply job(s)',
    );
    expect(await jobState(applyQueue, jobId)).toBe('cancelled');
    const [stored] = await setup.context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(stored!.status).toBe('ready');
    expect(stored!.applyRateLimitedUntil).toBeNull();
    // The preview stays ready, so the user applies again rather than requesting a new fix.
    expect(stored!.applyError).toBe(
      `The apply was cancelled because GitHub App installation ${setup.installationId} on ` +
        "Codertocat was suspended by Codertocat. Whoever suspended it, an owner of Codertocat or the app's " +
        'owner, must unsuspend it. Then apply again.',
    );
  });

  it('cancels the notice jobs of presses', async () => {
    const { run, jobIds } = await runWithNotices(setup.installationId, 'e'.repeat(40));
    const otherInstallationId = setup.installationId + 1;
    await insertInstallation(setup.context, { id: otherInstallationId });
    const other = await runWithNotices(otherInstallationId, 'f'.repeat(40));

    const suspended = await deliver('installation', example('installation', 'suspend'));

    expect(suspended.body.outcome).toBe(
      `installation ${setup.installationId} marked suspended; ` +
        'cancelled 0 run(s), 0 report(s), 0 patch request(s) and 3 notice job(s)',
    );
    for (const jobId of jobIds) {
      expect(await jobState(fixPressNoticeQueue, jobId)).toBe('cancelled');
    }
    for (const jobId of other.jobIds) {
      expect(await jobState(fixPressNoticeQueue, jobId)).toBe('created');
    }
    // The run stays completed, so its page would show the cancelled wait.
    const stored = await runById(run.id);
    expect(stored.status).toBe('completed');
    expect(stored.rateLimitedUntil).toBeNull();
    expect(stored.rateLimitedJobId).toBeNull();
    expect(stored.rateLimitedQueue).toBeNull();
    const otherRun = await runById(other.run.id);
    expect(otherRun.rateLimitedJobId).toBe(other.jobIds[2]);
  });

  it('stops a running preview', async () => {
    const { request } = await queuedPreview();
    const allowanceBefore = await allowanceOf(owner.id);
    const [job] = await setup.context.boss.fetch<PreviewJobData>(previewQueue, {
      includeMetadata: true,
    });
    expect(job?.id).toBe(request.previewJobId);

    // GitHub suspends the installation while the model works on the first file.
    let suspension: ReturnType<typeof deliver> | undefined;
    groq.setHandler(() => {
      suspension ??= deliver('installation', example('installation', 'suspend'));
      return { text: 'export {};\n', delayMs: 1500 };
    });
    await handlePreviewJob(setup.context, job!);
    // A worker completes the job it fetched, and pg-boss leaves a cancelled job cancelled.
    await setup.context.boss.complete(previewQueue, job!.id);
    const suspended = await suspension!;

    expect(suspended.body.outcome).toContain('1 patch request(s)');
    const completions = groq.requests.filter((entry) => entry.path.endsWith('/chat/completions'));
    expect(completions).toHaveLength(1);
    const stored = await patchRequestById(request.id);
    expect(stored.status).toBe('cancelled');
    expect(stored.error).toBe(suspendReason());
    const files = await setup.context.db
      .select({ path: patchFiles.path, status: patchFiles.status })
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, request.id))
      .orderBy(patchFiles.path);
    expect(files).toEqual([
      { path: 'src/a.ts', status: 'ready' },
      { path: 'src/b.ts', status: 'pending' },
    ]);
    expect(await jobState(previewQueue, request.previewJobId)).toBe('cancelled');

    // The one call that ran is charged once, and nothing stays reserved.
    const used = completions[0]!.reply!.usage!.total_tokens;
    const ledger = await setup.context.db
      .select()
      .from(tokenEvents)
      .where(eq(tokenEvents.patchRequestId, request.id));
    expect(ledger).toHaveLength(1);
    expect(ledger[0]!.chargedTokens).toBe(used);
    expect(ledger[0]!.path).toBe('src/a.ts');
    expect(stored.totalTokens).toBe(used);
    const allowanceAfter = await allowanceOf(owner.id);
    expect(allowanceAfter.tokensUsed).toBe(allowanceBefore.tokensUsed + used);
    expect(allowanceAfter.tokensReserved).toBe(allowanceBefore.tokensReserved);
    expect(allowanceAfter.reservations).toBe(0);
    expect(allowanceAfter.ledgerRows).toBe(allowanceBefore.ledgerRows + 1);
  });

  it('keeps work cancelled after unsuspend', async () => {
    const run = await queuedRun();
    const { request } = await queuedPreview();
    await deliver('installation', example('installation', 'suspend'));
    const cancelledRequest = await patchRequestById(request.id);

    const resumed = await deliver('installation', example('installation', 'unsuspend'));

    expect(resumed.status).toBe(202);
    // One job checks the open pull requests with GitHub, however many there are.
    expect(resumed.body.outcome).toBe(
      `installation ${setup.installationId} resumed; queued a check of its open pull requests ` +
        'with GitHub',
    );
    expect(await setup.context.boss.fetch(confirmPullRequestQueue)).toEqual([]);
    expect((await installationRow()).suspendedAt).toBeNull();
    const storedRun = await runById(run.id);
    expect(storedRun.status).toBe('cancelled');
    expect(storedRun.error).toBe(suspendReason());
    const storedRequest = await patchRequestById(request.id);
    expect(storedRequest.status).toBe('cancelled');
    expect(storedRequest.error).toBe(suspendReason());
    expect(storedRequest.completedAt).toEqual(cancelledRequest.completedAt);
    expect(await jobState(analyzeQueue, run.analyzeJobId)).toBe('cancelled');
    expect(await jobState(previewQueue, request.previewJobId)).toBe('cancelled');
    expect(await setup.context.boss.fetch(analyzeQueue)).toEqual([]);
    expect(await setup.context.boss.fetch(previewQueue)).toEqual([]);
  });

  it('ignores a redelivered suspend', async () => {
    const run = await queuedRun();
    const { request } = await queuedPreview();
    const payload = example('installation', 'suspend');
    const first = await deliver('installation', payload, 'suspend-once');
    const suspendedAt = (await installationRow()).suspendedAt;
    const cancelledRequest = await patchRequestById(request.id);

    const redelivered = await deliver('installation', payload, 'suspend-once');
    const newDelivery = await deliver('installation', payload, 'suspend-again');

    expect(first.status).toBe(202);
    expect(redelivered.status).toBe(200);
    expect(redelivered.body).toEqual({ delivery: 'suspend-once', duplicate: true });
    expect(newDelivery.status).toBe(202);
    expect(newDelivery.body.outcome).toBe(
      `installation ${setup.installationId} marked suspended; ` +
        'cancelled 0 run(s), 0 report(s) and 0 patch request(s)',
    );
    expect(suspendedAt).not.toBeNull();
    expect((await installationRow()).suspendedAt).toEqual(suspendedAt);
    const storedRun = await runById(run.id);
    expect(storedRun.status).toBe('cancelled');
    expect(storedRun.error).toBe(suspendReason());
    const storedRequest = await patchRequestById(request.id);
    expect(storedRequest.status).toBe('cancelled');
    expect(storedRequest.completedAt).toEqual(cancelledRequest.completedAt);
    expect(await jobState(previewQueue, request.previewJobId)).toBe('cancelled');
    const allowance = await allowanceOf(owner.id);
    expect(allowance.ledgerRows).toBe(0);
    expect(allowance.tokensReserved).toBe(0);
  });
});

describe('installation deleted', () => {
  it('cancels a queued run and preview', async () => {
    const run = await queuedRun();
    const { request } = await queuedPreview();
    const allowanceBefore = await allowanceOf(owner.id);

    const deleted = await deliver('installation', example('installation', 'deleted'));

    expect(deleted.status).toBe(202);
    expect(deleted.body.outcome).toBe(
      `installation ${setup.installationId} marked deleted; ` +
        'cancelled 1 run(s), 0 report(s) and 1 patch request(s)',
    );
    // The example payload is for the account octocat, uninstalled by octocat.
    const reason = describeInstallationCancel({
      id: setup.installationId,
      accountLogin: 'octocat',
      actorLogin: 'octocat',
      cause: 'uninstalled',
    });
    expect(reason).toContain('octocat uninstalled the GitHub App from octocat');
    expect(reason).toContain('must install the app again');
    const storedRun = await runById(run.id);
    expect(storedRun.status).toBe('cancelled');
    expect(storedRun.error).toBe(reason);
    const storedRequest = await patchRequestById(request.id);
    expect(storedRequest.status).toBe('cancelled');
    expect(storedRequest.error).toBe(reason);
    expect(await jobState(analyzeQueue, run.analyzeJobId)).toBe('cancelled');
    expect(await jobState(previewQueue, request.previewJobId)).toBe('cancelled');
    expect((await installationRow()).deletedAt).not.toBeNull();
    const allowanceAfter = await allowanceOf(owner.id);
    expect(allowanceAfter).toEqual(allowanceBefore);
    expect(allowanceAfter.ledgerRows).toBe(0);
    expect(allowanceAfter.reservations).toBe(0);
  });
  it('cancels the notice jobs of presses', async () => {
    const { jobIds } = await runWithNotices(setup.installationId, 'e'.repeat(40));

    const deleted = await deliver('installation', example('installation', 'deleted'));

    expect(deleted.body.outcome).toBe(
      `installation ${setup.installationId} marked deleted; ` +
        'cancelled 0 run(s), 0 report(s), 0 patch request(s) and 3 notice job(s)',
    );
    for (const jobId of jobIds) {
      expect(await jobState(fixPressNoticeQueue, jobId)).toBe('cancelled');
    }
  });
});

describe('cancelled work on the dashboard and API', () => {
  it('shows the status and reason', async () => {
    const run = await queuedRun();
    const { run: reportedRun, request } = await queuedPreview();
    await deliver('installation', example('installation', 'suspend'));
    const session = await createSession(setup.context.db, owner.id, 1);
    const cookie = `fixwright_session=${session.token}`;
    const reasonText = `installation ${setup.installationId} on Codertocat was suspended`;

    const apiRun = await app.request(`/api/runs/${run.id}`, {
      headers: { authorization: `Bearer ${owner.token}` },
    });
    expect(apiRun.status).toBe(200);
    const apiRunBody = (await apiRun.json()) as Record<string, unknown>;
    expect(apiRunBody.status).toBe('cancelled');
    expect(apiRunBody.error).toBe(suspendReason());
    const apiRequest = await app.request(`/api/patch-requests/${request.id}`, {
      headers: { authorization: `Bearer ${owner.token}` },
    });
    const apiRequestBody = (await apiRequest.json()) as Record<string, unknown>;
    expect(apiRequestBody.status).toBe('cancelled');
    expect(apiRequestBody.error).toBe(suspendReason());

    const pages = {
      home: '/',
      cancelledRun: `/runs/${run.id}`,
      runWithPreview: `/runs/${reportedRun.id}`,
      preview: `/patch-requests/${request.id}`,
    };
    for (const [name, path] of Object.entries(pages)) {
      const response = await app.request(path, { headers: { cookie } });
      expect(response.status, name).toBe(200);
      const html = await response.text();
      expect(html, name).toContain('status-cancelled');
      expect(html, name).toContain(reasonText);
    }
  });
});
