import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { estimateFileCalls } from '../../src/autofix/preview-budget.ts';
import {
  findings,
  patchRequestFindings,
  patchRequests,
  platformKeyRejections,
  prRuns,
  tokenEvents,
  tokenReservations,
  userApiKeys,
  users,
  webhookDeliveries,
} from '../../src/db/schema/index.ts';
import { fixPressNoticeQueue } from '../../src/jobs/fix-press-notice.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import {
  insertFindings,
  insertInstallation,
  insertRun,
  repositoryId,
} from '../helpers/github-context.ts';
import { storeOwnKey } from '../helpers/own-key-preview.ts';
import { recordGroqKeyRejection } from '../helpers/platform-key-rejection.ts';
import { listPatchRequestFindingIds } from '../helpers/web.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

const secret = 'check-run-secret';
const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];

let context: TestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;
let nextCheckRunId = 900;

async function deliver(event: string, payload: Record<string, unknown>, application = app) {
  const body = JSON.stringify(payload);
  const id = `check-run-${delivery++}`;
  const response = await application.request('/webhooks/github', {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': id,
      'x-hub-signature-256': 'sha256=' + createHmac('sha256', secret).update(body).digest('hex'),
    },
  });
  expect(response.status).toBe(202);
  const [row] = await context.db
    .select()
    .from(webhookDeliveries)
    .where(eq(webhookDeliveries.deliveryId, id));
  return row!.outcome!;
}

/** Builds the requested_action example for the check run and repository of a stored run. */
function requestedAction(checkRunId: number, installationId: number, sender = 'a-reviewer') {
  const payload = structuredClone(
    examples
      .find((entry) => entry.name === 'check_run')!
      .examples.find((example) => example.action === 'requested_action')!,
  );
  payload.check_run.id = checkRunId;
  payload.repository.id = repositoryId;
  payload.installation = { id: installationId };
  payload.requested_action = { identifier: 'fix' };
  payload.sender = { ...payload.sender, login: sender, id: 777 };
  return payload;
}

type FindingInput = { path: string; line: number; severity: 'error' | 'warning' | 'notice'; message?: string };

/** Returns `count` warnings on consecutive lines of one file. */
function warningsInOneFile(count: number): FindingInput[] {
  return Array.from({ length: count }, (_, index) => ({
    path: 'src/app.ts',
    line: index + 1,
    severity: 'warning' as const,
  }));
}

async function runWithCheckRun(installationId: number, findingsOrCount: number | FindingInput[]) {
  const checkRunId = nextCheckRunId++;
  const run = await insertRun(context, {
    installationId,
    headSha: checkRunId.toString(16).padStart(40, '0'),
    baseSha: 'b'.repeat(40),
  });
  await context.db.update(prRuns).set({ checkRunId }).where(eq(prRuns.id, run.id));
  const inputs = typeof findingsOrCount === 'number' ? warningsInOneFile(findingsOrCount) : findingsOrCount;
  const rows = await insertFindings(context, run.id, inputs);
  return { run, checkRunId, rows, findingIds: rows.map((row) => row.id) };
}

/** Returns the least estimate of a call that fixes one of the findings alone. */
function smallestSingleCall(rows: Parameters<typeof estimateFileCalls>[0]) {
  const singles = rows.map((row) => ({ row, tokens: estimateFileCalls([row])[0]!.tokens }));
  return singles.reduce((least, single) => (single.tokens < least.tokens ? single : least));
}

/** Returns the notices that the presses on a run queued for its check run, oldest first. */
async function noticesOf(runId: string) {
  const rows = await context.database.sql<{ data: { notice: unknown } }[]>`
    SELECT data FROM pgboss.job
    WHERE name = ${fixPressNoticeQueue} AND data->>'runId' = ${runId}
    ORDER BY created_on, id`;
  return rows.map((row) => row.data.notice);
}

function requestsOf(runId: string) {
  return context.db.select().from(patchRequests).where(eq(patchRequests.runId, runId));
}

async function ownerWithInstallation(
  login: string,
  installationId: number,
  allowance: { plan?: 'free' | 'enterprise'; tokenLimit?: number; tokensUsed?: number } = {},
) {
  const [owner] = await context.db.insert(users).values({ login, ...allowance }).returning();
  await insertInstallation(context, { id: installationId, userId: owner!.id });
  return owner!;
}

/** Returns the user's allowance counters and the number of its ledger and reservation rows. */
async function usageOf(userId: string) {
  const [user] = await context.db
    .select({ tokensUsed: users.tokensUsed, tokensReserved: users.tokensReserved })
    .from(users)
    .where(eq(users.id, userId));
  const events = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
  const reservations = await context.db.select().from(tokenReservations).where(eq(tokenReservations.userId, userId));
  return { ...user!, events: events.length, reservations: reservations.length };
}

/**
 * Checks that a press queued one preview of the run's two findings in one file, paid by the
 * owner's own key, so that the owner's allowance and ledger did not change.
 */
async function expectQueuedOnOwnKey(press: {
  runId: string;
  ownerId: string;
  outcome: string;
  usageBefore: Awaited<ReturnType<typeof usageOf>>;
}) {
  const requests = await requestsOf(press.runId);
  expect(requests).toHaveLength(1);
  expect(requests[0]!.userId).toBe(press.ownerId);
  expect(press.outcome).toBe(
    `patch request ${requests[0]!.id} queued for run ${press.runId} with 2 findings, paid by user ${press.ownerId}`,
  );
  expect(await noticesOf(press.runId)).toEqual([
    { kind: 'queued', patchRequestId: requests[0]!.id, files: 1, leftOutFiles: 0, leftOutFindings: 0 },
  ]);
  expect(await usageOf(press.ownerId)).toEqual(press.usageBefore);
}

/** The message of the built-in console.log rule, which makes each call here over 500 tokens. */
const consoleLogMessage = 'A console.log call was added, so remove this debug output or use the logger.';

// The preview processes files with an error first, then warnings, then notices.
const findingsInThreeFiles: FindingInput[] = [
  { path: 'src/a.ts', line: 2, severity: 'warning', message: consoleLogMessage },
  { path: 'src/a.ts', line: 9, severity: 'notice', message: consoleLogMessage },
  { path: 'src/b.ts', line: 1, severity: 'error', message: consoleLogMessage },
  { path: 'src/c.ts', line: 3, severity: 'notice', message: consoleLogMessage },
];

beforeAll(async () => {
  // A platform key, so that the owner's allowance pays for the preview.
  context = await createTestContext({ WEBHOOK_SECRET: secret, GROQ_API_KEY: 'gsk_check_run_platform_key' });
  app = createApp(context);
});

afterAll(async () => {
  await context?.close();
});

describe('check_run requested_action', () => {
  it('queues a preview paid by the installation owner', async () => {
    const installation = structuredClone(
      examples
        .find((entry) => entry.name === 'installation')!
        .examples.find((example) => example.action === 'created')!,
    );
    installation.installation.id = 8101;
    await deliver('installation', installation);
    const [owner] = await context.db
      .select()
      .from(users)
      .where(eq(users.login, installation.sender.login));
    const { run, checkRunId, findingIds } = await runWithCheckRun(8101, 3);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8101));

    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
    expect(requests[0]!.userId).toBe(owner!.id);
    expect(requests[0]!.status).toBe('queued');
    expect(outcome).toBe(
      `patch request ${requests[0]!.id} queued for run ${run.id} with 3 findings, ` +
        `paid by user ${owner!.id}`,
    );
    const selected = await context.db
      .select()
      .from(patchRequestFindings)
      .where(eq(patchRequestFindings.patchRequestId, requests[0]!.id));
    expect(selected.map((row) => row.findingId).sort()).toEqual([...findingIds].sort());
    const job = await context.boss.getJobById(previewQueue, requests[0]!.previewJobId!);
    expect(job?.data).toEqual({ patchRequestId: requests[0]!.id });
  });

  it('does not queue a second preview while one runs', async () => {
    const owner = await context.db.insert(users).values({ login: 'second-press' }).returning();
    await insertInstallation(context, { id: 8102, userId: owner[0]!.id });
    const { run, checkRunId } = await runWithCheckRun(8102, 1);
    await deliver('check_run', requestedAction(checkRunId, 8102));
    const outcome = await deliver('check_run', requestedAction(checkRunId, 8102));

    expect(outcome).toMatch(/^ignored: patch request .* is already in progress$/);
    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
  });

  it('queues one preview for two presses at once', async () => {
    const owner = await context.db.insert(users).values({ login: 'double-press' }).returning();
    await insertInstallation(context, { id: 8105, userId: owner[0]!.id });
    const { run, checkRunId } = await runWithCheckRun(8105, 1);

    // A double click sends two deliveries. Both wait here, behind a lock on the installation,
    // so that they check for a preview in progress at the same moment.
    let outcomes!: Promise<string[]>;
    await context.db.transaction(async (tx) => {
      await tx.execute(sql`SELECT 1 FROM installations WHERE id = 8105 FOR UPDATE`);
      outcomes = Promise.all([
        deliver('check_run', requestedAction(checkRunId, 8105)),
        deliver('check_run', requestedAction(checkRunId, 8105)),
      ]);
      await waitForLockWait(context, 10_000, 2);
    });

    const [first, second] = (await outcomes).sort();
    expect(first).toMatch(/^ignored: patch request .* is already in progress$/);
    expect(second).toMatch(/^patch request .* queued for run/);
    expect(await requestsOf(run.id)).toHaveLength(1);
  });

  it('records a missing owner in the outcome', async () => {
    await insertInstallation(context, { id: 8103, userId: null });
    const { run, checkRunId } = await runWithCheckRun(8103, 2);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8103));

    expect(outcome).toContain('no patch request: installation 8103 has no owner');
    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(0);
    expect(await noticesOf(run.id)).toEqual([{ kind: 'no_owner' }]);
  });

  it('ignores another action identifier', async () => {
    const payload = requestedAction(1, 8103);
    payload.requested_action = { identifier: 'lgtm|26764' };
    expect(await deliver('check_run', payload)).toBe(
      'ignored: requested action "lgtm|26764" is not fix',
    );
  });

  it('rejects a press on a superseded run', async () => {
    const owner = await context.db.insert(users).values({ login: 'superseded-press' }).returning();
    await insertInstallation(context, { id: 8104, userId: owner[0]!.id });
    const { run, checkRunId } = await runWithCheckRun(8104, 1);
    await context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, run.id));

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8104));
    expect(outcome).toBe(
      `no patch request: run ${run.id} is superseded; use the check run of the newest commit`,
    );
    expect(await noticesOf(run.id)).toEqual([{ kind: 'run_not_completed', status: 'superseded' }]);
  });

  it('rejects a press during a new analysis', async () => {
    const owner = await context.db.insert(users).values({ login: 'analyzing-press' }).returning();
    await insertInstallation(context, { id: 8106, userId: owner[0]!.id });
    const { run, checkRunId } = await runWithCheckRun(8106, 1);
    // A push back to a superseded commit queues its run again, which keeps its check run.
    await context.db.update(prRuns).set({ status: 'analyzing' }).where(eq(prRuns.id, run.id));

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8106));

    expect(outcome).toBe(
      `no patch request: run ${run.id} is analyzing; press "Fix with AI" on the new check run ` +
        'that its report posts',
    );
    expect(await noticesOf(run.id)).toEqual([{ kind: 'run_not_completed', status: 'analyzing' }]);
  });
});

describe('check_run requested_action within the allowance', () => {
  it('queues only the most severe finding that fits', async () => {
    const owner = await ownerWithInstallation('fits-one-file', 8111);
    const { run, checkRunId, rows } = await runWithCheckRun(8111, findingsInThreeFiles);
    const calls = estimateFileCalls(rows);
    expect(calls.map((call) => call.path)).toEqual(['src/b.ts', 'src/a.ts', 'src/c.ts']);
    // Any two calls are over the free plan's 1,000 tokens, so only src/b.ts fits.
    expect(calls[0]!.tokens).toBeLessThanOrEqual(1000);
    expect(calls[0]!.tokens + calls[2]!.tokens).toBeGreaterThan(1000);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8111));

    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
    expect(requests[0]!.userId).toBe(owner.id);
    const fileB = rows.filter((row) => row.path === 'src/b.ts').map((row) => row.id);
    expect(await listPatchRequestFindingIds(context.db, requests[0]!.id)).toEqual(fileB.sort());
    expect(outcome).toBe(
      `patch request ${requests[0]!.id} queued for run ${run.id} with 1 finding, ` +
        `paid by user ${owner.id}; 3 of 4 findings left out (2 of 3 files entirely), because ` +
        'their minimum reservations do not fit ' +
        "the 1000 tokens left of that user's allowance",
    );
    expect(await noticesOf(run.id)).toEqual([
      { kind: 'queued', patchRequestId: requests[0]!.id, files: 1, leftOutFiles: 2, leftOutFindings: 3 },
    ]);
  });

  it('queues a later file that still fits', async () => {
    await ownerWithInstallation('fits-two-files', 8112, { tokenLimit: 1500 });
    const { run, checkRunId, rows } = await runWithCheckRun(8112, findingsInThreeFiles);
    const tokens = new Map(estimateFileCalls(rows).map((call) => [call.path, call.tokens]));
    expect(tokens.get('src/b.ts')! + tokens.get('src/a.ts')!).toBeLessThanOrEqual(1500);
    expect(tokens.get('src/b.ts')! + tokens.get('src/a.ts')! + tokens.get('src/c.ts')!).toBeGreaterThan(1500);

    await deliver('check_run', requestedAction(checkRunId, 8112));

    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
    const expected = rows.filter((row) => row.path !== 'src/c.ts').map((row) => row.id);
    expect(await listPatchRequestFindingIds(context.db, requests[0]!.id)).toEqual(expected.sort());
  });

  it('queues nothing when no finding fits', async () => {
    const owner = await ownerWithInstallation('fits-nothing', 8113, { tokensUsed: 500 });
    const { run, checkRunId, rows } = await runWithCheckRun(8113, findingsInThreeFiles);
    const smallest = smallestSingleCall(rows);
    expect(smallest.tokens).toBeGreaterThan(500);
    const place = `${smallest.row.ruleId} on ${smallest.row.path}:${smallest.row.startLine}`;

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8113));

    expect(await requestsOf(run.id)).toHaveLength(0);
    expect(outcome).toBe(
      'no patch request: no finding fits the allowance of user fits-nothing, who pays for fixes of ' +
        'this installation. Not enough token allowance left: the Free plan allows 1000 tokens ' +
        'per period, 500 are used and 0 are reserved by calls in progress, so 500 remain but the ' +
        `model call for the cheapest of the run's 4 findings alone (${place}) needs a minimum ` +
        `reservation of at least ${smallest.tokens} tokens, its prompt estimate plus the least ` +
        'output cap that can hold the file. Upgrade to the Pro plan, wait for the next period, ' +
        'or add your own Groq or Gemini key.',
    );
    expect(outcome).not.toContain(owner.id);
    const logged = context.logs.find((line) => line.event === 'webhook.accepted' && line.outcome === outcome);
    expect(logged).toBeDefined();
  });

  it('says about when the file sizes are known', async () => {
    await ownerWithInstallation('fits-nothing-sized', 8114, { tokensUsed: 500 });
    const { run, checkRunId, rows } = await runWithCheckRun(8114, findingsInThreeFiles);
    await context.db.update(findings).set({ fileBytes: 30 }).where(eq(findings.runId, run.id));
    const sized = rows.map((row) => ({ ...row, fileBytes: 30 }));
    const smallest = smallestSingleCall(sized);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8114));

    expect(await requestsOf(run.id)).toHaveLength(0);
    expect(outcome).toContain(
      `the cheapest of the run's 4 findings alone (${smallest.row.ruleId} on ${smallest.row.path}:` +
        `${smallest.row.startLine}) needs a minimum reservation of about ${smallest.tokens} tokens,`,
    );
  });

  it('names a run\'s only finding as such', async () => {
    await ownerWithInstallation('fits-nothing-one-file', 8131, { tokensUsed: 500 });
    const { run, checkRunId, rows } = await runWithCheckRun(8131, [
      { path: 'src/a.ts', line: 2, severity: 'warning', message: consoleLogMessage },
    ]);
    const [call] = estimateFileCalls(rows);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8131));

    expect(await requestsOf(run.id)).toHaveLength(0);
    expect(outcome).toContain(
      "so 500 remain but the model call for the run's one finding (debug/console-log on " +
        `src/a.ts:2) needs a minimum reservation of at least ${call!.tokens} tokens,`,
    );
    expect(outcome).not.toContain('smallest');
  });

  it('queues every file without a token limit', async () => {
    await ownerWithInstallation('no-limit', 8115, { plan: 'enterprise', tokenLimit: -1 });
    const { run, checkRunId, findingIds } = await runWithCheckRun(8115, findingsInThreeFiles);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8115));

    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
    expect(await listPatchRequestFindingIds(context.db, requests[0]!.id)).toEqual([...findingIds].sort());
    expect(outcome).not.toContain('left out');
  });
});

/** Returns `count` findings over 31 files: one error, then two warnings and two notices, in turn. */
function manyFindings(count: number): FindingInput[] {
  const severities = ['error', 'warning', 'warning', 'notice', 'notice'] as const;
  return Array.from({ length: count }, (_, index) => ({
    path: `src/file-${String(index % 31).padStart(2, '0')}.ts`,
    line: index + 1,
    severity: severities[index % severities.length]!,
  }));
}

function countSeverities(rows: { id: string; severity: string }[], ids: readonly string[]) {
  const picked = new Set(ids);
  const counts: Record<string, number> = { error: 0, warning: 0, notice: 0 };
  for (const row of rows) if (picked.has(row.id)) counts[row.severity]! += 1;
  return counts;
}

describe('check_run requested_action past 1,000 findings', () => {
  it('queues the 1,000 most severe without a token limit', async () => {
    const owner = await ownerWithInstallation('limit-no-allowance', 8121, { plan: 'enterprise', tokenLimit: -1 });
    const { run, checkRunId, rows } = await runWithCheckRun(8121, manyFindings(2700));

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8121));

    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
    const selected = await listPatchRequestFindingIds(context.db, requests[0]!.id);
    expect(selected).toHaveLength(1000);
    expect(countSeverities(rows, selected)).toEqual({ error: 540, warning: 460, notice: 0 });
    expect(outcome).toBe(
      `patch request ${requests[0]!.id} queued for run ${run.id} with 1000 findings, ` +
        `paid by user ${owner.id}; 1700 of 2700 findings left out (0 of 31 files entirely), ` +
        '1700 because a preview takes at most 1000 findings, picked most severe first',
    );
    expect(await noticesOf(run.id)).toEqual([
      {
        kind: 'queued',
        patchRequestId: requests[0]!.id,
        files: 31,
        leftOutFiles: 0,
        leftOutFindings: 1700,
        overLimitFindings: 1700,
      },
    ]);
  });

  it('names both reasons when the allowance leaves findings out too', async () => {
    const owner = await ownerWithInstallation('limit-and-allowance', 8122, { tokenLimit: 100_000 });
    const { run, checkRunId, rows } = await runWithCheckRun(8122, manyFindings(2700));
    // Every finding but the notices of the last file fits.
    const calls = estimateFileCalls(rows);
    const lastFile = calls.at(-1)!.path;
    const lastFileNotices = rows.filter((row) => row.path === lastFile && row.severity === 'notice');
    const fitting = rows.filter((row) => !lastFileNotices.includes(row));
    const remaining = estimateFileCalls(fitting).reduce((sum, call) => sum + call.tokens, 0);
    await context.db.update(users).set({ tokenLimit: remaining }).where(eq(users.id, owner.id));

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8122));

    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
    expect(await listPatchRequestFindingIds(context.db, requests[0]!.id)).toHaveLength(1000);
    const overLimit = fitting.length - 1000;
    const overAllowance = lastFileNotices.length;
    expect(outcome).toBe(
      `patch request ${requests[0]!.id} queued for run ${run.id} with 1000 findings, ` +
        `paid by user ${owner.id}; ${overLimit + overAllowance} of 2700 findings left out ` +
        `(0 of 31 files entirely), ${overLimit} because a preview takes at most 1000 findings, ` +
        `picked most severe first, and ${overAllowance} because their minimum reservations do not ` +
        `fit the ${remaining} tokens left of that user's allowance`,
    );
    expect(await noticesOf(run.id)).toEqual([
      {
        kind: 'queued',
        patchRequestId: requests[0]!.id,
        files: 31,
        leftOutFiles: 0,
        leftOutFindings: overLimit + overAllowance,
        overLimitFindings: overLimit,
      },
    ]);
  });

  it('takes no more findings than the API accepts', async () => {
    await ownerWithInstallation('limit-exactly', 8123, { plan: 'enterprise', tokenLimit: -1 });
    const { run, checkRunId, findingIds } = await runWithCheckRun(8123, manyFindings(1000));

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8123));

    const requests = await requestsOf(run.id);
    expect(await listPatchRequestFindingIds(context.db, requests[0]!.id)).toEqual([...findingIds].sort());
    expect(outcome).not.toContain('left out');
    expect(await noticesOf(run.id)).toEqual([
      { kind: 'queued', patchRequestId: requests[0]!.id, files: 31, leftOutFiles: 0, leftOutFindings: 0 },
    ]);
  });
});

describe('check_run requested_action with a rejected platform key', () => {
  const rejectPlatformKey = (due = false) => recordGroqKeyRejection(context.db, 'gsk_check_run_platform_key', due);

  afterEach(async () => {
    await context.db.delete(platformKeyRejections);
  });

  it('queues nothing without an own key', async () => {
    const owner = await ownerWithInstallation('rejected-platform', 8141, { tokensUsed: 120 });
    const { run, checkRunId } = await runWithCheckRun(8141, 2);
    await rejectPlatformKey();
    const before = await usageOf(owner.id);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8141));

    expect(outcome).toBe(
      'no patch request: Groq rejected the platform Groq key that this service provides ' +
        `(HTTP 401), and user ${owner.id}, who pays for fixes of this installation, has no ` +
        'usable key of their own. Replace GROQ_API_KEY, or have that user save a Groq or Gemini ' +
        'key on the keys page, then press "Fix with AI" again.',
    );
    expect(await requestsOf(run.id)).toEqual([]);
    expect(await noticesOf(run.id)).toEqual([{ kind: 'platform_key_rejected', provider: 'groq', status: 401 }]);
    expect(before).toEqual({ tokensUsed: 120, tokensReserved: 0, events: 0, reservations: 0 });
    expect(await usageOf(owner.id)).toEqual(before);
  });

  it('queues nothing over the allowance either', async () => {
    // Over the allowance too, so the rejection must come before the allowance's notice.
    await ownerWithInstallation('rejected-platform-spent', 8142, { tokensUsed: 1000 });
    const { run, checkRunId } = await runWithCheckRun(8142, 1);
    await rejectPlatformKey();

    await deliver('check_run', requestedAction(checkRunId, 8142));

    expect(await requestsOf(run.id)).toEqual([]);
    expect(await noticesOf(run.id)).toEqual([{ kind: 'platform_key_rejected', provider: 'groq', status: 401 }]);
  });

  it('queues a preview with an own key', async () => {
    const owner = await ownerWithInstallation('rejected-platform-own-key', 8143, { tokensUsed: 120 });
    await storeOwnKey(context, { userId: owner.id, provider: 'groq' }, 'gsk_own_key_of_owner_8143');
    const { run, checkRunId } = await runWithCheckRun(8143, 2);
    await rejectPlatformKey();
    const before = await usageOf(owner.id);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8143));

    await expectQueuedOnOwnKey({ runId: run.id, ownerId: owner.id, outcome, usageBefore: before });
  });

  it('queues a preview when a re-check is due', async () => {
    await ownerWithInstallation('rejected-platform-due', 8144);
    const { run, checkRunId } = await runWithCheckRun(8144, 1);
    await rejectPlatformKey(true);

    await deliver('check_run', requestedAction(checkRunId, 8144));

    const requests = await requestsOf(run.id);
    expect(requests).toHaveLength(1);
    expect(await noticesOf(run.id)).toEqual([
      { kind: 'queued', patchRequestId: requests[0]!.id, files: 1, leftOutFiles: 0, leftOutFindings: 0 },
    ]);
  });
});

describe('check_run requested_action without a model provider', () => {
  // The same database, as a process started without GROQ_API_KEY and GEMINI_API_KEY.
  const withoutPlatformKeys = () =>
    createApp({ ...context, config: { ...context.config, GROQ_API_KEY: undefined, GEMINI_API_KEY: undefined } });

  it('queues nothing without an own key', async () => {
    const owner = await ownerWithInstallation('no-provider', 8151, { tokensUsed: 120 });
    const { run, checkRunId } = await runWithCheckRun(8151, 2);
    const before = await usageOf(owner.id);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8151), withoutPlatformKeys());

    expect(outcome).toBe(
      'no patch request: No model provider is available for previews: this service has no ' +
        'platform key (neither GROQ_API_KEY nor GEMINI_API_KEY is set), and user ' +
        `${owner.id}, who pays for fixes of this installation, has no Groq or Gemini key of ` +
        'their own. That user can save their own Groq or Gemini key on the keys page, or the ' +
        'operator of this service can set GROQ_API_KEY or GEMINI_API_KEY. Then press "Fix ' +
        'with AI" again.',
    );
    expect(await requestsOf(run.id)).toEqual([]);
    expect(await noticesOf(run.id)).toEqual([{ kind: 'no_provider', unusableOwnKeys: [] }]);
    expect(before).toEqual({ tokensUsed: 120, tokensReserved: 0, events: 0, reservations: 0 });
    expect(await usageOf(owner.id)).toEqual(before);
  });

  it('names an unusable own key', async () => {
    const owner = await ownerWithInstallation('no-provider-unusable', 8152);
    await storeOwnKey(context, { userId: owner.id, provider: 'gemini' }, 'AIzaUnusableOwnKeyOfOwner8152');
    await context.db
      .update(userApiKeys)
      .set({ unusableCause: 'rejected', unusableReason: 'Gemini rejected your saved key.' })
      .where(eq(userApiKeys.userId, owner.id));
    const { run, checkRunId } = await runWithCheckRun(8152, 1);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8152), withoutPlatformKeys());

    expect(outcome).toBe(
      'no patch request: No model provider is available for previews: user ' +
        `${owner.id}, who pays for fixes of this installation, has saved a Gemini key, but it ` +
        'is unusable, and previews use no platform key in place of an unusable key of their ' +
        'own. That user can replace it with a working key on the keys page. Deleting it there ' +
        'instead lets previews use the platform key, if the operator of this service sets ' +
        'GEMINI_API_KEY. Then press "Fix with AI" again.',
    );
    expect(await requestsOf(run.id)).toEqual([]);
    expect(await noticesOf(run.id)).toEqual([{ kind: 'no_provider', unusableOwnKeys: ['gemini'] }]);
  });

  it('queues a preview with an own key', async () => {
    const owner = await ownerWithInstallation('no-provider-own-key', 8153, { tokensUsed: 120 });
    await storeOwnKey(context, { userId: owner.id, provider: 'gemini' }, 'AIzaOwnKeyOfOwner8153');
    const { run, checkRunId } = await runWithCheckRun(8153, 2);
    const before = await usageOf(owner.id);

    const outcome = await deliver('check_run', requestedAction(checkRunId, 8153), withoutPlatformKeys());

    await expectQueuedOnOwnKey({ runId: run.id, ownerId: owner.id, outcome, usageBefore: before });
  });
});
