import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { findings, patchRequests, prRuns, pullRequestCloses } from '../../src/db/schema/index.ts';
import { maxEventClockSkewMs } from '../../src/events/event-times.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import { fixPressNoticeQueue, type FixPressNoticeJobData } from '../../src/jobs/fix-press-notice.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { insertUser } from '../helpers/github-context.ts';

const secret = 'order-test-secret';
const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];

let context: TestContext;
let app: ReturnType<typeof createApp>;
let nextPullRequest = 100;
let delivery = 0;

function sha(character: string): string {
  return character.repeat(40);
}

/** Builds a pull_request payload from the webhook examples for `number` at `headSha`. */
function pullRequestEvent(
  action: string,
  number: number,
  headSha: string,
  updatedAt: string,
): Record<string, any> {
  const payload = structuredClone(
    examples
      .find((entry) => entry.name === 'pull_request')!
      .examples.find((example) => example.action === 'opened')!,
  );
  payload.action = action;
  payload.number = number;
  payload.installation = { id: 7001 };
  payload.pull_request.number = number;
  payload.pull_request.head.sha = headSha;
  payload.pull_request.updated_at = updatedAt;
  return payload;
}

async function deliver(payload: Record<string, unknown>): Promise<string> {
  const body = JSON.stringify(payload);
  const response = await app.request('/webhooks/github', {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'pull_request',
      'x-github-delivery': `order-${delivery++}`,
      'x-hub-signature-256': 'sha256=' + createHmac('sha256', secret).update(body).digest('hex'),
    },
  });
  expect(response.status).toBe(202);
  return (await response.json()).outcome;
}

async function runsOf(number: number) {
  return context.db
    .select()
    .from(prRuns)
    .where(eq(prRuns.prNumber, number))
    .orderBy(prRuns.createdAt);
}

async function jobState(queue: string, id: string | null) {
  return (await context.boss.getJobById(queue, id!))?.state;
}

/** Queues the notice of a "Fix with AI" press on the run's check run, as the press handler does. */
async function queueNotice(runId: string, notice: FixPressNoticeJobData['notice']) {
  const data: FixPressNoticeJobData = { runId, checkRunId: 1, pressedAt: Date.now(), sender: null, notice };
  return (await context.boss.send(fixPressNoticeQueue, data))!;
}

/** Completes a run and queues a preview for it, as the API would. */
async function queuePreview(runId: string) {
  await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, runId));
  const [finding] = await context.db
    .insert(findings)
    .values({
      runId,
      path: 'a.ts',
      startLine: 1,
      endLine: 1,
      ruleId: 'debug/console-log',
      severity: 'warning',
      message: 'x',
      fingerprint: `fp-${runId}`,
    })
    .returning();
  const user = await insertUser(context);
  const created = await createPatchRequest(context.db, context.boss, {
    runId,
    userId: user.id,
    findingIds: [finding!.id],
  });
  if (!created.ok) throw new Error('patch request not created');
  const [request] = await context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, created.id));
  return request!;
}

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret });
  app = createApp(context);
});

afterAll(async () => {
  await context?.close();
});

describe('synchronize', () => {
  it('supersedes older runs and cancels their preview', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('a'), '2024-05-01T10:00:00Z'));
    const [first] = await runsOf(number);
    const preview = await queuePreview(first!.id);
    expect(await jobState(previewQueue, preview.previewJobId)).toBe('created');
    const noticeJobId = await queueNotice(first!.id, { kind: 'in_progress', patchRequestId: preview.id });

    const outcome = await deliver(
      pullRequestEvent('synchronize', number, sha('b'), '2024-05-01T10:05:00Z'),
    );

    const [older, newer] = await runsOf(number);
    expect(outcome).toContain('superseded 1 older run(s)');
    expect(older!.status).toBe('superseded');
    expect(older!.error).toContain(sha('b'));
    expect(newer!.status).toBe('queued');
    expect(newer!.headSha).toBe(sha('b'));
    expect(newer!.prUpdatedAt?.toISOString()).toBe('2024-05-01T10:05:00.000Z');
    const [cancelled] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, preview.id));
    expect(cancelled!.status).toBe('cancelled');
    expect(cancelled!.error).toContain('newer commit');
    expect(await jobState(previewQueue, preview.previewJobId)).toBe('cancelled');
    expect(await jobState(fixPressNoticeQueue, noticeJobId)).toBe('cancelled');
    expect(await jobState(analyzeQueue, newer!.analyzeJobId)).toBe('created');
  });

  it('treats a late older event as superseded', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('synchronize', number, sha('d'), '2024-05-02T12:00:00Z'));
    const outcome = await deliver(
      pullRequestEvent('opened', number, sha('c'), '2024-05-02T11:00:00Z'),
    );

    const runs = await runsOf(number);
    const newer = runs.find((run) => run.headSha === sha('d'))!;
    const late = runs.find((run) => run.headSha === sha('c'))!;
    expect(outcome).toContain('superseded on arrival');
    expect(newer.status).toBe('queued');
    expect(newer.error).toBeNull();
    expect(late.status).toBe('superseded');
    expect(late.error).toContain(newer.id);
    expect(late.analyzeJobId).toBeNull();
    expect(await jobState(analyzeQueue, newer.analyzeJobId)).toBe('created');
  });

  it('runs a commit again after a force push back', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('7'), '2024-05-05T09:00:00Z'));
    await deliver(pullRequestEvent('synchronize', number, sha('8'), '2024-05-05T09:01:00Z'));
    const outcome = await deliver(
      pullRequestEvent('synchronize', number, sha('7'), '2024-05-05T09:02:00Z'),
    );

    const runs = await runsOf(number);
    const first = runs.find((run) => run.headSha === sha('7'))!;
    const second = runs.find((run) => run.headSha === sha('8'))!;
    expect(runs).toHaveLength(2);
    expect(outcome).toBe(`run ${first.id} queued again; superseded 1 older run(s)`);
    expect(first.status).toBe('queued');
    expect(first.error).toBeNull();
    expect(second.status).toBe('superseded');
  });
});

describe('closed', () => {
  it('cancels queued analysis and previews', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('e'), '2024-05-03T09:00:00Z'));
    await deliver(pullRequestEvent('synchronize', number, sha('f'), '2024-05-03T09:10:00Z'));
    // The older run completed and has a preview waiting; the newer one is still queued.
    const [older, latest] = await runsOf(number);
    await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, older!.id));
    const preview = await queuePreview(older!.id);
    const noticeJobId = await queueNotice(older!.id, { kind: 'in_progress', patchRequestId: preview.id });
    // A notice that points to the newest check run stays true after the close.
    const earlierJobId = await queueNotice(older!.id, { kind: 'earlier_analysis' });

    const outcome = await deliver(
      pullRequestEvent('closed', number, sha('f'), '2024-05-03T09:20:00Z'),
    );

    expect(outcome).toBe(
      'pull request closed: marked 2 run(s) closed, cancelled 1 run(s) and 1 patch request(s)',
    );
    const [stored] = await context.db.select().from(prRuns).where(eq(prRuns.id, latest!.id));
    expect(stored!.status).toBe('cancelled');
    expect(stored!.error).toContain('closed');
    expect(await jobState(analyzeQueue, latest!.analyzeJobId)).toBe('cancelled');
    const [request] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, preview.id));
    expect(request!.status).toBe('cancelled');
    expect(request!.error).toBe(
      'Cancelled because pull request Codertocat/Hello-World#' +
        `${number} was closed. Reopen it on GitHub, then request the fix again.`,
    );
    expect(await jobState(previewQueue, preview.previewJobId)).toBe('cancelled');
    expect(await jobState(fixPressNoticeQueue, noticeJobId)).toBe('cancelled');
    expect(await jobState(fixPressNoticeQueue, earlierJobId)).toBe('created');
  });

  it('marks every run closed', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('2'), '2024-05-06T09:00:00Z'));
    await deliver(pullRequestEvent('synchronize', number, sha('3'), '2024-05-06T09:10:00Z'));
    const [older, latest] = await runsOf(number);
    await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, latest!.id));

    await deliver(pullRequestEvent('closed', number, sha('3'), '2024-05-06T09:20:00Z'));

    const runs = await runsOf(number);
    expect(runs.map((run) => run.prClosedAt?.toISOString())).toEqual([
      '2024-05-06T09:20:00.000Z',
      '2024-05-06T09:20:00.000Z',
    ]);
    expect(runs.find((run) => run.id === older!.id)!.status).toBe('superseded');
    // Closing after the analysis keeps the run's findings and its status.
    expect(runs.find((run) => run.id === latest!.id)!.status).toBe('completed');
  });

  it('keeps the close time on redelivery', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('4'), '2024-05-07T09:00:00Z'));
    const closed = pullRequestEvent('closed', number, sha('4'), '2024-05-07T09:05:00Z');
    closed.pull_request.closed_at = '2024-05-07T09:04:59Z';
    await deliver(closed);

    const outcome = await deliver(closed);

    expect(outcome).toBe(
      'pull request closed: marked 1 run(s) closed, cancelled 0 run(s) and 0 patch request(s)',
    );
    const [run] = await runsOf(number);
    expect(run!.prClosedAt?.toISOString()).toBe('2024-05-07T09:04:59.000Z');
  });

  it('keeps a later close when its reopen comes last', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('8'), '2024-05-11T09:00:00Z'));
    const [run] = await runsOf(number);
    await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, run!.id));
    // Closed at 09:01, reopened at 09:02 and closed again at 09:03. The reopen arrives last.
    await deliver(pullRequestEvent('closed', number, sha('8'), '2024-05-11T09:01:00Z'));
    await deliver(pullRequestEvent('closed', number, sha('8'), '2024-05-11T09:03:00Z'));

    const outcome = await deliver(
      pullRequestEvent('reopened', number, sha('8'), '2024-05-11T09:02:00Z'),
    );

    expect(outcome).toContain('pull request reopened: marked 0 run(s) open');
    const [stored] = await runsOf(number);
    expect(stored!.prClosedAt?.toISOString()).toBe('2024-05-11T09:03:00.000Z');
    expect(stored!.prReopenedAt?.toISOString()).toBe('2024-05-11T09:02:00.000Z');
  });

  it('ignores a push delivered after a later close', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('a'), '2024-05-12T09:00:00Z'));
    await deliver(pullRequestEvent('closed', number, sha('a'), '2024-05-12T09:02:00Z'));

    const outcome = await deliver(
      pullRequestEvent('synchronize', number, sha('b'), '2024-05-12T09:01:00Z'),
    );

    expect(outcome).toBe(
      `ignored: Codertocat/Hello-World#${number} was closed at 2024-05-12T09:02:00.000Z, ` +
        'after this event',
    );
    const runs = await runsOf(number);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.headSha).toBe(sha('a'));
    expect(runs[0]!.prClosedAt?.toISOString()).toBe('2024-05-12T09:02:00.000Z');
  });

  it('ignores a reopen older than the close', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('c'), '2024-05-13T09:00:00Z'));
    // Closed before the analysis, so the close cancelled the run.
    await deliver(pullRequestEvent('closed', number, sha('c'), '2024-05-13T09:05:00Z'));

    const outcome = await deliver(
      pullRequestEvent('reopened', number, sha('c'), '2024-05-13T09:02:00Z'),
    );

    expect(outcome).toBe(
      'pull request reopened: marked 0 run(s) open; ignored: ' +
        `Codertocat/Hello-World#${number} was closed at 2024-05-13T09:05:00.000Z, after this event`,
    );
    const [run] = await runsOf(number);
    expect(run!.status).toBe('cancelled');
    expect(run!.prClosedAt?.toISOString()).toBe('2024-05-13T09:05:00.000Z');
    expect(await jobState(analyzeQueue, run!.analyzeJobId)).toBe('cancelled');
  });

  it('marks the runs open on reopen', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('5'), '2024-05-08T09:00:00Z'));
    const [run] = await runsOf(number);
    await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, run!.id));
    await deliver(pullRequestEvent('closed', number, sha('5'), '2024-05-08T09:01:00Z'));

    const outcome = await deliver(
      pullRequestEvent('reopened', number, sha('5'), '2024-05-08T09:02:00Z'),
    );

    expect(outcome).toBe(
      `pull request reopened: marked 1 run(s) open; the run for Codertocat/Hello-World#${number} ` +
        `at ${sha('5')} stays completed`,
    );
    const [stored] = await runsOf(number);
    expect(stored!.prClosedAt).toBeNull();
    expect(stored!.status).toBe('completed');
  });

  it('ignores a close delivered after a later reopen', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('6'), '2024-05-09T09:00:00Z'));
    const [run] = await runsOf(number);
    const request = await queuePreview(run!.id);
    const reopened = await deliver(
      pullRequestEvent('reopened', number, sha('6'), '2024-05-09T09:02:00Z'),
    );
    expect(reopened).toContain('pull request reopened: marked 0 run(s) open');

    const outcome = await deliver(
      pullRequestEvent('closed', number, sha('6'), '2024-05-09T09:01:00Z'),
    );

    expect(outcome).toBe(
      `ignored: Codertocat/Hello-World#${number} was reopened or updated after this close, ` +
        'at 2024-05-09T09:01:00.000Z',
    );
    const [stored] = await runsOf(number);
    expect(stored!.prClosedAt).toBeNull();
    expect(stored!.prReopenedAt?.toISOString()).toBe('2024-05-09T09:02:00.000Z');
    const [preview] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(preview!.status).toBe('queued');
    expect(await jobState(previewQueue, preview!.previewJobId)).toBe('created');
  });

  it('keeps the mark when a reopen arrives after a later close', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('7'), '2024-05-10T09:00:00Z'));
    const [run] = await runsOf(number);
    await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, run!.id));
    await deliver(pullRequestEvent('closed', number, sha('7'), '2024-05-10T09:05:00Z'));

    const outcome = await deliver(
      pullRequestEvent('reopened', number, sha('7'), '2024-05-10T09:02:00Z'),
    );

    expect(outcome).toContain('pull request reopened: marked 0 run(s) open');
    const [stored] = await runsOf(number);
    expect(stored!.prClosedAt?.toISOString()).toBe('2024-05-10T09:05:00.000Z');
  });

  it('queues a cancelled run again on reopen', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('1'), '2024-05-04T09:00:00Z'));
    await deliver(pullRequestEvent('closed', number, sha('1'), '2024-05-04T09:01:00Z'));
    const outcome = await deliver(
      pullRequestEvent('reopened', number, sha('1'), '2024-05-04T09:02:00Z'),
    );

    const [run] = await runsOf(number);
    expect(outcome).toBe(`run ${run!.id} queued again`);
    expect(run!.status).toBe('queued');
    expect(run!.prClosedAt).toBeNull();
    expect(await jobState(analyzeQueue, run!.analyzeJobId)).toBe('created');
  });

  it('analyzes a failed run again on a new delivery', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('opened', number, sha('1'), '2024-05-05T09:00:00Z'));
    const [failed] = await runsOf(number);
    await context.db
      .update(prRuns)
      .set({
        status: 'failed',
        error: 'Analysis failed: credentials were not configured.',
        completedAt: new Date('2024-05-05T09:01:00Z'),
      })
      .where(eq(prRuns.id, failed!.id));

    const outcome = await deliver(
      pullRequestEvent('opened', number, sha('1'), '2024-05-05T09:00:00Z'),
    );

    const runs = await runsOf(number);
    expect(runs).toHaveLength(1);
    expect(outcome).toBe(`run ${failed!.id} queued again`);
    expect(runs[0]!.status).toBe('queued');
    expect(runs[0]!.error).toBeNull();
    expect(runs[0]!.completedAt).toBeNull();
    expect(await jobState(analyzeQueue, runs[0]!.analyzeJobId)).toBe('created');
  });
});

describe('close before any run', () => {
  async function recordedClose(number: number) {
    const rows = await context.db
      .select()
      .from(pullRequestCloses)
      .where(eq(pullRequestCloses.prNumber, number));
    return rows.map((row) => row.closedAt.toISOString());
  }

  it('ignores an open delivered after it', async () => {
    const number = nextPullRequest++;
    const closed = await deliver(
      pullRequestEvent('closed', number, sha('d'), '2024-05-14T09:05:00Z'),
    );
    expect(closed).toBe(
      'pull request closed: marked 0 run(s) closed, cancelled 0 run(s) and 0 patch request(s)',
    );
    expect(await recordedClose(number)).toEqual(['2024-05-14T09:05:00.000Z']);

    const opened = await deliver(
      pullRequestEvent('opened', number, sha('d'), '2024-05-14T09:00:00Z'),
    );
    const synchronized = await deliver(
      pullRequestEvent('synchronize', number, sha('e'), '2024-05-14T09:03:00Z'),
    );

    const note = `Codertocat/Hello-World#${number} was closed at 2024-05-14T09:05:00.000Z`;
    expect(opened).toBe(`ignored: ${note}, after this event`);
    expect(synchronized).toBe(`ignored: ${note}, after this event`);
    expect(await runsOf(number)).toHaveLength(0);
  });

  it('keeps the latest of two closes', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('closed', number, sha('d'), '2024-05-15T09:05:00Z'));
    await deliver(pullRequestEvent('closed', number, sha('d'), '2024-05-15T09:01:00Z'));

    expect(await recordedClose(number)).toEqual(['2024-05-15T09:05:00.000Z']);
  });

  it('ignores a reopen older than it', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('closed', number, sha('d'), '2024-05-16T09:05:00Z'));

    const outcome = await deliver(
      pullRequestEvent('reopened', number, sha('d'), '2024-05-16T09:02:00Z'),
    );

    expect(outcome).toBe(
      'pull request reopened: marked 0 run(s) open; ignored: ' +
        `Codertocat/Hello-World#${number} was closed at 2024-05-16T09:05:00.000Z, after this event`,
    );
    expect(await runsOf(number)).toHaveLength(0);
    expect(await recordedClose(number)).toEqual(['2024-05-16T09:05:00.000Z']);
  });

  it('analyzes after a later reopen', async () => {
    const number = nextPullRequest++;
    await deliver(pullRequestEvent('closed', number, sha('d'), '2024-05-17T09:05:00Z'));

    const outcome = await deliver(
      pullRequestEvent('reopened', number, sha('d'), '2024-05-17T09:10:00Z'),
    );

    const runs = await runsOf(number);
    expect(runs).toHaveLength(1);
    expect(outcome).toBe(`run ${runs[0]!.id} queued`);
    expect(runs[0]!.status).toBe('queued');
    expect(runs[0]!.prClosedAt).toBeNull();
    expect(await jobState(analyzeQueue, runs[0]!.analyzeJobId)).toBe('created');
    expect(await recordedClose(number)).toEqual([]);
  });
});

describe('times in the future', () => {
  const receivedAt = Date.parse('2024-06-01T10:00:00Z');
  const dayAhead = '2024-06-02T10:00:00Z';
  const tenMinutesLater = Date.parse('2024-06-01T10:10:00Z');

  afterEach(() => {
    vi.useRealTimers();
  });

  /** Sets the clock of the process to `time`, from which it goes on running. */
  function setClock(time: number) {
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    vi.setSystemTime(time);
  }

  /**
   * Delivers `first` stamped a day ahead of the clock, then `second` ten minutes later, stamped
   * with the clock, and returns their outcomes.
   */
  async function deliverAheadThenOnTime(
    number: number,
    first: { action: string; headSha: string },
    second: { action: string; headSha: string },
  ): Promise<[string, string]> {
    setClock(receivedAt);
    const early = await deliver(pullRequestEvent(first.action, number, first.headSha, dayAhead));
    setClock(tenMinutesLater);
    const onTime = new Date(tenMinutesLater).toISOString();
    const later = await deliver(pullRequestEvent(second.action, number, second.headSha, onTime));
    return [early, later];
  }

  it('bounds a push stamped a day ahead', async () => {
    const number = nextPullRequest++;
    const [opened, synchronized] = await deliverAheadThenOnTime(
      number,
      { action: 'opened', headSha: sha('a') },
      { action: 'synchronize', headSha: sha('b') },
    );

    const runs = await runsOf(number);
    const early = runs.find((run) => run.headSha === sha('a'))!;
    const later = runs.find((run) => run.headSha === sha('b'))!;
    expect(opened).toContain(`run ${early.id} queued; updated_at ${dayAhead} is more than 60 s`);
    const bound = receivedAt + maxEventClockSkewMs;
    expect(early.prUpdatedAt!.getTime()).toBeGreaterThanOrEqual(bound);
    expect(early.prUpdatedAt!.getTime()).toBeLessThan(bound + 10_000);
    expect(synchronized).toBe(`run ${later.id} queued; superseded 1 older run(s)`);
    expect(later.status).toBe('queued');
    expect(later.error).toBeNull();
    expect(early.status).toBe('superseded');
  });

  it('keeps a time within the skew', async () => {
    const number = nextPullRequest++;
    setClock(receivedAt);
    const updatedAt = new Date(receivedAt + maxEventClockSkewMs / 2).toISOString();

    const outcome = await deliver(pullRequestEvent('opened', number, sha('a'), updatedAt));

    const [run] = await runsOf(number);
    expect(outcome).toBe(`run ${run!.id} queued`);
    expect(run!.prUpdatedAt!.toISOString()).toBe(updatedAt);
  });

  it('bounds a close stamped a day ahead', async () => {
    const number = nextPullRequest++;
    const [closed, reopened] = await deliverAheadThenOnTime(
      number,
      { action: 'closed', headSha: sha('a') },
      { action: 'reopened', headSha: sha('a') },
    );

    const runs = await runsOf(number);
    expect(closed).toContain(`updated_at ${dayAhead} is more than 60 s`);
    expect(runs).toHaveLength(1);
    expect(reopened).toBe(`run ${runs[0]!.id} queued`);
    expect(runs[0]!.status).toBe('queued');
    expect(runs[0]!.prClosedAt).toBeNull();
  });
});
