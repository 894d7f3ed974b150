import { randomBytes, randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import {
  findings,
  installations,
  patchRequests,
  prRuns,
  tokenReservations,
  users,
} from '../../src/db/schema/index.ts';
import { analyzeQueue } from '../../src/jobs/analyze.ts';
import {
  confirmInstallationQueue,
  queueInstallationConfirmation,
} from '../../src/jobs/confirm-installation.ts';
import { findRunningCheck } from '../../src/jobs/keyed-checks.ts';
import { jobLockKeys, JobLiveness } from '../../src/jobs/job-liveness.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import { startWorkers } from '../../src/jobs/workers.ts';
import { StartupError } from '../../src/errors/startup-error.ts';
import {
  deadWorkerMessage,
  failTimedOutWork,
  recoverDeadJobs,
} from '../../src/jobs/recover-jobs.ts';
import { reserveTokens } from '../../src/usage/allowance.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let context: TestContext;
let userId: string;
let prNumber = 0;

beforeAll(async () => {
  context = await createTestContext();
  const [user] = await context.db
    .insert(users)
    .values({ login: 'recover', plan: 'pro', tokenLimit: 100_000 })
    .returning();
  userId = user!.id;
  await context.db
    .insert(installations)
    .values({ id: 71, accountLogin: 'recover', accountId: 7, accountType: 'User', userId });
});

afterAll(async () => {
  await context.close();
});

async function insertRun(status: 'completed' | 'analyzing' = 'completed') {
  prNumber++;
  const [run] = await context.db
    .insert(prRuns)
    .values({
      installationId: 71,
      repositoryId: 7,
      repository: 'recover/repo',
      prNumber,
      baseSha: 'a'.repeat(40),
      headSha: 'b'.repeat(40),
      headRef: 'feature',
      headRepository: 'recover/repo',
      status,
    })
    .returning();
  return run!;
}

/** Queues a preview and takes its job as a worker would, then ages it by `ageSeconds`. */
async function activePreview(options: { ageSeconds: number; retryLimit?: number }) {
  const run = await insertRun();
  const [finding] = await context.db
    .insert(findings)
    .values({
      runId: run.id,
      path: 'src/a.ts',
      startLine: 1,
      endLine: 1,
      ruleId: 'debug/console-log',
      severity: 'warning',
      message: 'Remove the console.log call.',
      fingerprint: `recover-${prNumber}`,
    })
    .returning();
  const created = await createPatchRequest(context.db, context.boss, {
    runId: run.id,
    userId,
    findingIds: [finding!.id],
  });
  if (!created.ok) throw new Error('patch request not created');
  const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, created.id));
  const jobId = request!.previewJobId!;
  if (options.retryLimit !== undefined) {
    await context.db.execute(sql`UPDATE pgboss.job SET retry_limit = ${options.retryLimit} WHERE id = ${jobId}`);
  }

  const [job] = await context.boss.fetch(previewQueue);
  expect(job!.id).toBe(jobId);
  await context.db.execute(sql`
    UPDATE pgboss.job SET started_on = now() - make_interval(secs => ${options.ageSeconds})
    WHERE id = ${jobId}
  `);

  await context.db
    .update(patchRequests)
    .set({ status: 'running' })
    .where(eq(patchRequests.id, created.id));
  return { patchRequestId: created.id, jobId };
}

async function jobState(jobId: string) {
  const [row] = await context.db.execute<{ state: string; output: { message?: string } | null }>(
    sql`SELECT state, output FROM pgboss.job WHERE id = ${jobId}`,
  );
  return row!;
}

async function reservedTokens() {
  const [user] = await context.db.select().from(users).where(eq(users.id, userId));
  return user!.tokensReserved;
}

/** Tells whether any session holds the liveness lock of `jobId`. */
async function lockHeld(jobId: string): Promise<boolean> {
  const [high, low] = jobLockKeys(jobId);
  const [row] = await context.db.execute<{ held: boolean }>(sql`
    SELECT EXISTS (
      SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted
        AND classid = ${high >>> 0}::bigint::oid AND objid = ${low >>> 0}::bigint::oid
    ) AS held
  `);
  return row!.held;
}

const quick = { minimumAgeSeconds: 60, confirmDelayMs: 20 };

/** Reserves `tokens` for the call named by `idempotencyKey`, as a worker's model call does. */
async function holdTokens(tokens: number, idempotencyKey: string): Promise<void> {
  const hold = await reserveTokens(context.db, { userId, tokens, idempotencyKey, ttlSeconds: 900 });
  expect(hold.ok).toBe(true);
}

describe('recoverDeadJobs', () => {
  it('retries a dead job and releases its holds', async () => {
    const { patchRequestId, jobId } = await activePreview({ ageSeconds: 120 });
    await holdTokens(700, `${patchRequestId}:src/a.ts:generation-0:attempt-0:groq`);
    await holdTokens(50, 'another-request:src/a.ts:generation-0:attempt-0:groq');

    const outcome = await recoverDeadJobs(context, quick);

    expect(outcome).toEqual({ retried: 1, failed: 0, releasedTokens: 700 });
    const state = await jobState(jobId);
    expect(state.state).toBe('retry');
    expect(state.output?.message).toContain('the worker running it stopped');
    expect(await reservedTokens()).toBe(50);
    const left = await context.db.select().from(tokenReservations);
    expect(left.map((row) => row.tokens)).toEqual([50]);
    await context.db.delete(tokenReservations);
    await context.db.update(users).set({ tokensReserved: 0 }).where(eq(users.id, userId));
  });

  it('releases the holds of a job that continues after a rate limit', async () => {
    const { patchRequestId, jobId } = await activePreview({ ageSeconds: 120 });
    // The job continues a preview whose attempt 1 was rate-limited, so its first attempt is 2.
    const data = { patchRequestId, rateLimitedSince: Date.now() - 60_000, firstAttempt: 2 };
    await context.db.execute(sql`UPDATE pgboss.job SET data = ${JSON.stringify(data)}::jsonb WHERE id = ${jobId}`);
    await holdTokens(700, `${patchRequestId}:src/a.ts:generation-0:attempt-2:groq`);
    await holdTokens(50, `${patchRequestId}:src/a.ts:generation-0:attempt-0:groq`);

    const outcome = await recoverDeadJobs(context, quick);

    expect(outcome).toEqual({ retried: 1, failed: 0, releasedTokens: 700 });
    expect((await jobState(jobId)).state).toBe('retry');
    expect(await reservedTokens()).toBe(50);
    await context.db.delete(tokenReservations);
    await context.db.update(users).set({ tokensReserved: 0 }).where(eq(users.id, userId));
  });

  it('leaves a job whose worker holds its liveness lock', async () => {
    const { jobId } = await activePreview({ ageSeconds: 120 });
    const liveness = new JobLiveness(context.database.url, context.logger);
    let finish!: () => void;
    const running = liveness.run(jobId, () => new Promise<void>((resolve) => (finish = resolve)));
    try {
      await expect.poll(() => lockHeld(jobId)).toBe(true);
      expect(liveness.runningJobs()).toEqual([jobId]);
      const outcome = await recoverDeadJobs(context, quick);
      expect(outcome.retried + outcome.failed).toBe(0);
      expect((await jobState(jobId)).state).toBe('active');
    } finally {
      finish();
      await running;
      await liveness.close();
    }
    expect(await lockHeld(jobId)).toBe(false);
    const outcome = await recoverDeadJobs(context, quick);
    expect(outcome.retried).toBe(1);
    expect((await jobState(jobId)).state).toBe('retry');
  });

  it('leaves a job younger than the minimum age', async () => {
    const { jobId } = await activePreview({ ageSeconds: 10 });
    const outcome = await recoverDeadJobs(context, quick);
    expect(outcome.retried + outcome.failed).toBe(0);
    expect((await jobState(jobId)).state).toBe('active');
    await context.boss.fail(previewQueue, jobId);
  });

  it('fails the preview of a job on its last attempt', async () => {
    const { patchRequestId, jobId } = await activePreview({ ageSeconds: 120, retryLimit: 0 });
    const outcome = await recoverDeadJobs(context, quick);
    expect(outcome).toEqual({ retried: 0, failed: 1, releasedTokens: 0 });
    expect((await jobState(jobId)).state).toBe('failed');
    const [request] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('failed');
    expect(request!.error).toBe(
      'Preview failed: The worker running it stopped (its process ended or lost its database session).',
    );
  });

  it('fails a dead job once when two recoveries run at once', async () => {
    const { jobId } = await activePreview({ ageSeconds: 120 });
    const outcomes = await Promise.all([
      recoverDeadJobs(context, quick),
      recoverDeadJobs(context, quick),
    ]);
    expect(outcomes.map((outcome) => outcome.retried).sort()).toEqual([0, 1]);
    const [row] = await context.db.execute<{ retry_count: number; state: string }>(
      sql`SELECT retry_count, state FROM pgboss.job WHERE id = ${jobId}`,
    );
    expect(row!.state).toBe('retry');
    expect(row!.retry_count).toBe(0);
  });
});

describe('recoverDeadJobs of a check', () => {
  it('retries it and moves up the waiting check', async () => {
    const key = '71';
    const jobId = await context.db.transaction((tx) =>
      queueInstallationConfirmation(tx, context.boss, 71),
    );
    await context.db.execute(sql`UPDATE pgboss.job SET start_after = now() WHERE id = ${jobId}`);
    const [job] = await context.boss.fetch(confirmInstallationQueue);
    expect(job?.id).toBe(jobId);
    await context.db.execute(sql`
      UPDATE pgboss.job SET started_on = now() - interval '120 seconds' WHERE id = ${jobId}
    `);
    // A later check of the key defers to the dead one while it is active.
    const laterCheck = randomUUID();
    expect(await findRunningCheck(context.db, confirmInstallationQueue, key, laterCheck)).toBe(jobId);
    // The check that a deferral queued waits for the dead one's end or expiry.
    const waiting = await context.db.transaction((tx) =>
      queueInstallationConfirmation(tx, context.boss, 71, 300),
    );
    expect(waiting).not.toBeNull();

    const outcome = await recoverDeadJobs(context, quick);

    expect(outcome).toEqual({ retried: 1, failed: 0, releasedTokens: 0 });
    const [row] = await context.db.execute<{ state: string; message: string; wait_seconds: number }>(sql`
      SELECT state, output->>'message' AS message,
        extract(epoch FROM start_after - now())::float AS wait_seconds
      FROM pgboss.job WHERE id = ${jobId}
    `);
    expect(row!.state).toBe('retry');
    expect(row!.message).toBe(`Failed: ${deadWorkerMessage}.`);
    // pg-boss's backoff for the first retry with retryDelay 15: 15 to 30 s.
    expect(row!.wait_seconds).toBeGreaterThan(10);
    expect(row!.wait_seconds).toBeLessThanOrEqual(30);
    expect(await findRunningCheck(context.db, confirmInstallationQueue, key, laterCheck)).toBeNull();
    expect(
      context.logs.filter((line) => line.event === 'jobs.dead_worker' && line.jobId === jobId),
    ).toMatchObject([{ queue: confirmInstallationQueue, attempt: 0, lastAttempt: false }]);
    const [moved] = await context.db.execute<{ wait_seconds: number }>(sql`
      SELECT extract(epoch FROM start_after - now())::float AS wait_seconds
      FROM pgboss.job WHERE id = ${waiting}
    `);
    expect(moved!.wait_seconds).toBeGreaterThan(5);
    expect(moved!.wait_seconds).toBeLessThanOrEqual(10);
    expect(
      context.logs.filter((line) => line.event === 'jobs.deferred_check_moved' && line.jobId === waiting),
    ).toMatchObject([{ endedJobId: jobId, queue: confirmInstallationQueue }]);
    await context.boss.cancel(confirmInstallationQueue, [jobId!, waiting!]);
  });
});

describe('recoverDeadJobs when the process stops', () => {
  it('ends the pass during its pause', async () => {
    const { jobId } = await activePreview({ ageSeconds: 120 });
    const stopping = new AbortController();
    const pass = recoverDeadJobs(context, {
      minimumAgeSeconds: 60,
      confirmDelayMs: 60_000,
      signal: stopping.signal,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    stopping.abort();
    expect(await pass).toEqual({ retried: 0, failed: 0, releasedTokens: 0 });
    expect((await jobState(jobId)).state).toBe('active');
    await context.boss.fail(previewQueue, jobId);
  });
});

describe('JobLiveness', () => {
  it('fails worker start without a connection', async () => {
    // A role limited to zero connections is rejected as a server out of connections rejects any client.
    const role = `capped_${randomBytes(4).toString('hex')}`;
    await context.db.execute(sql.raw(`CREATE ROLE ${role} LOGIN PASSWORD 'capped' CONNECTION LIMIT 0`));
    try {
      const url = new URL(context.database.url);
      url.username = role;
      url.password = 'capped';
      const error = await startWorkers(context, url.toString()).then(
        () => undefined,
        (rejection: unknown) => rejection,
      );
      expect(error).toBeInstanceOf(StartupError);
      expect((error as Error).message).toMatch(
        /^The worker could not open its job liveness connection to PostgreSQL \(.*too many connections for role.*\): check that the server accepts another connection/,
      );
      // The start failed before any worker was registered, so no job of this file was taken.
      const [workers] = await context.db.execute<{ count: number }>(sql`
        SELECT count(*)::integer AS count FROM pg_stat_activity
        WHERE application_name = 'fixwright-job-liveness' AND datname = current_database()
      `);
      expect(workers!.count).toBe(0);
    } finally {
      await context.db.execute(sql.raw(`DROP ROLE ${role}`));
    }
  });

  it('connects before any job runs', async () => {
    const liveness = new JobLiveness(context.database.url, context.logger);
    const sessions = async () => {
      const [row] = await context.db.execute<{ count: number }>(sql`
        SELECT count(*)::integer AS count FROM pg_stat_activity
        WHERE application_name = 'fixwright-job-liveness' AND datname = current_database()
      `);
      return row!.count;
    };
    try {
      expect(await sessions()).toBe(0);
      await liveness.connect();
      expect(await sessions()).toBe(1);
    } finally {
      await liveness.close();
    }
    await expect.poll(sessions).toBe(0);
  });

  it('takes the lock again after its connection is closed', async () => {
    const jobId = '4f1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
    const liveness = new JobLiveness(context.database.url, context.logger);
    let finish!: () => void;
    const running = liveness.run(jobId, () => new Promise<void>((resolve) => (finish = resolve)));
    const holders = async () => {
      const [row] = await context.db.execute<{ holders: number }>(sql`
        SELECT count(*)::integer AS holders FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND a.application_name = 'fixwright-job-liveness'
          AND a.datname = current_database()
      `);
      return row!.holders;
    };
    try {
      await expect.poll(holders, { timeout: 5_000 }).toBe(1);
      await context.db.execute(sql`
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'fixwright-job-liveness' AND datname = current_database()
      `);
      await expect.poll(holders, { timeout: 5_000 }).toBe(0);
      await expect.poll(holders, { timeout: 10_000, interval: 200 }).toBe(1);
    } finally {
      finish();
      await running;
    }
    await expect.poll(holders, { timeout: 5_000 }).toBe(0);
    await liveness.close();
  });
  it('takes the lock once an earlier attempt lets it go', async () => {
    const { jobId } = await activePreview({ ageSeconds: 120 });
    // A session of another process that still runs the previous attempt of this job.
    const earlier = postgres(context.database.url, { max: 1, onnotice: () => {} });
    const [high, low] = jobLockKeys(jobId);
    await earlier`SELECT pg_advisory_lock(${high}::integer, ${low}::integer)`;
    const liveness = new JobLiveness(context.database.url, context.logger);
    let finish!: () => void;
    const running = liveness.run(jobId, () => new Promise<void>((resolve) => (finish = resolve)));
    try {
      const lockTakenLogged = () =>
        context.logs.some((line) => line.event === 'jobs.liveness_lock_taken' && line.jobId === jobId);
      await expect.poll(lockTakenLogged).toBe(true);
      await earlier.end();
      await expect.poll(() => lockHeld(jobId), { timeout: 5_000, interval: 100 }).toBe(true);
      const outcome = await recoverDeadJobs(context, quick);
      expect(outcome.retried + outcome.failed).toBe(0);
      expect((await jobState(jobId)).state).toBe('active');
    } finally {
      finish();
      await running;
      await liveness.close();
      await earlier.end();
    }
    await context.boss.fail(previewQueue, jobId);
  });
});

/** Queues an analysis on its last attempt and fails its job the way pg-boss's expiry does. */
async function timedOutAnalysis() {
  const run = await insertRun('analyzing');
  const jobId = (await context.boss.send(analyzeQueue, { runId: run.id }, { retryLimit: 0 }))!;
  await context.db.update(prRuns).set({ analyzeJobId: jobId }).where(eq(prRuns.id, run.id));
  await context.boss.fetch(analyzeQueue);
  await context.db.execute(sql`
    UPDATE pgboss.job SET state = 'failed', completed_on = now(),
      output = '{"value": {"message": "job failed by timeout in active state"}}'::jsonb
    WHERE id = ${jobId}
  `);
  return { run, jobId };
}

describe('failTimedOutWork', () => {
  it('waits while the expired job still runs', async () => {
    const { run, jobId } = await timedOutAnalysis();
    const liveness = new JobLiveness(context.database.url, context.logger);
    let finish!: () => void;
    const running = liveness.run(jobId, () => new Promise<void>((resolve) => (finish = resolve)));
    try {
      await expect.poll(() => lockHeld(jobId)).toBe(true);
      await failTimedOutWork(context, 3600);
      const [stored] = await context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
      expect(stored!.status).toBe('analyzing');
    } finally {
      finish();
      await running;
      await liveness.close();
    }
    await failTimedOutWork(context, 3600);
    const [after] = await context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(after!.status).toBe('failed');
    // Out of the look-back, so the tests below count only their own jobs.
    await context.db.execute(
      sql`UPDATE pgboss.job SET completed_on = now() - interval '2 hours' WHERE id = ${jobId}`,
    );
  });

  it('fails the run of an analysis that timed out on its last attempt', async () => {
    const { run, jobId } = await timedOutAnalysis();
    expect(await failTimedOutWork(context, 3600)).toBe(1);
    const [stored] = await context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('failed');
    expect(stored!.error).toBe('Analysis failed: The job ran past its time limit on its last attempt.');
    // A second pass finds the same job and changes nothing.
    const before = stored!.completedAt;
    expect(await failTimedOutWork(context, 3600)).toBe(1);
    const [again] = await context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(again!.completedAt).toEqual(before);
  });

  it('leaves a run queued again with a new job', async () => {
    const { run, jobId } = await timedOutAnalysis();
    await failTimedOutWork(context, 3600);
    const [failed] = await context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(failed!.status).toBe('failed');
    // A new delivery for the commit queues the failed run again with a job of its own.
    const newJobId = await context.boss.send(analyzeQueue, { runId: run.id });
    await context.db
      .update(prRuns)
      .set({ status: 'queued', error: null, completedAt: null, analyzeJobId: newJobId })
      .where(eq(prRuns.id, run.id));

    await failTimedOutWork(context, 3600);

    const [stored] = await context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('queued');
    expect(stored!.error).toBeNull();
    await context.boss.cancel(analyzeQueue, newJobId!);
  });

  it('leaves a preview regenerated with a new job', async () => {
    const { patchRequestId, jobId } = await activePreview({ ageSeconds: 10, retryLimit: 0 });
    await context.db.execute(sql`
      UPDATE pgboss.job SET state = 'failed', completed_on = now(),
        output = '{"value": {"message": "job failed by timeout in active state"}}'::jsonb
      WHERE id = ${jobId}
    `);
    await failTimedOutWork(context, 3600);
    const [failed] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(failed!.status).toBe('failed');
    // Regenerating a file sends a new job and sets the request running again.
    const newJobId = await context.boss.send(previewQueue, { patchRequestId });
    await context.db
      .update(patchRequests)
      .set({ status: 'running', error: null, completedAt: null, previewJobId: newJobId })
      .where(eq(patchRequests.id, patchRequestId));
    await holdTokens(300, `${patchRequestId}:src/a.ts:generation-1:attempt-0:groq`);

    await failTimedOutWork(context, 3600);

    const [request] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('running');
    expect(request!.error).toBeNull();
    expect(await reservedTokens()).toBe(300);
    await context.db.delete(tokenReservations);
    await context.db.update(users).set({ tokensReserved: 0 }).where(eq(users.id, userId));
    await context.boss.cancel(previewQueue, newJobId!);
  });
});
