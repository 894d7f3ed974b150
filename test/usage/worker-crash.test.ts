import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findings,
  installations,
  patchFiles,
  patchRequests,
  prRuns,
  tokenEvents,
  tokenReservations,
  users,
} from '../../src/db/schema/index.ts';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import type { AppContext } from '../../src/context.ts';
import { startBoss } from '../../src/jobs/boss.ts';
import { recoverDeadJobs } from '../../src/jobs/recover-jobs.ts';
import { createQueues } from '../../src/jobs/workers.ts';
import { createLogger } from '../../src/logger.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createGitRepository, type GitRepository } from '../../src/demo/git-repository.ts';
import { waitFor } from '../helpers/process.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

const appId = '8080';
const installationId = 31;
const original = "export const x = 1;\nconsole.log('x', x);\n";
const fixed = 'export const x = 1;\n';
/** Files of the preview that a stop interrupts between its files. */
const manyPaths = Array.from({ length: 12 }, (_, index) => `src/many-${index}.ts`);

let database: TestDatabase;
let repository: GitRepository;
let github: FakeGitHub;
let groq: FakeGroq;
let env: NodeJS.ProcessEnv;
const services: ServiceProcess[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  repository = await createGitRepository({
    base: { 'README.md': '#\n' },
    head: { 'src/x.ts': original, ...Object.fromEntries(manyPaths.map((path) => [path, original])) },
  });
  const keys = generateAppKeyPair();
  github = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  github.setInstallation({ id: installationId, account: { login: 'crash', id: 3, type: 'User' } });
  github.addRepository({ owner: 'crash', repo: 'test', id: 808, gitDir: repository.dir });
  groq = await startFakeGroq();
  env = {
    DATABASE_URL: database.url,
    APP_ID: appId,
    PRIVATE_KEY: keys.privateKeyPem,
    GITHUB_API_URL: github.url,
    GROQ_API_KEY: 'gsk_platform_crash_test',
    GROQ_BASE_URL: groq.url,
    PREVIEW_JOB_TIMEOUT_SECONDS: '8',
    JOB_MAINTENANCE_INTERVAL_SECONDS: '1',
  };
}, 60_000);

afterAll(async () => {
  for (const service of services) await service.stop('SIGKILL');
  await Promise.all([github?.close(), groq?.close()]);
  await repository?.cleanup();
  await database?.close();
});

async function queuePreview(userId: string, prNumber: number, paths = ['src/x.ts']): Promise<string> {
  await database.db
    .insert(installations)
    .values({ id: installationId, accountLogin: 'crash', accountId: 3, accountType: 'User', userId })
    .onConflictDoNothing();
  // Each preview reads the pull request from GitHub before its first model call.
  github.addPullRequest({
    owner: 'crash',
    repo: 'test',
    number: prNumber,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: 'feature',
    title: 'Crash test',
  });
  const [run] = await database.db
    .insert(prRuns)
    .values({
      installationId,
      repositoryId: 808,
      repository: 'crash/test',
      prNumber,
      baseSha: repository.baseSha,
      headSha: repository.headSha,
      headRef: 'feature',
      headRepository: 'crash/test',
      status: 'completed',
    })
    .returning();
  const inserted = await database.db
    .insert(findings)
    .values(
      paths.map((path) => ({
        runId: run!.id,
        path,
        startLine: 2,
        endLine: 2,
        ruleId: 'debug/console-log',
        severity: 'warning' as const,
        message: 'Remove the console.log call.',
        fingerprint: `crash-fingerprint-${path}`,
      })),
    )
    .returning();
  // Sent from this process, so the queue and job exist before any worker runs.
  const logger = createLogger('silent');
  const boss = await startBoss(database.url, logger);
  await createQueues(boss);
  const created = await createPatchRequest(database.db, boss, {
    runId: run!.id,
    userId,
    findingIds: inserted.map((finding) => finding.id),
  });
  await boss.stop({ graceful: false, wait: true });
  if (!created.ok) throw new Error('patch request not created');
  return created.id;
}

/** Waits until the preview is ready and returns its row; a timeout shows the services' output. */
function waitForReadyPreview(patchRequestId: string, workers: ServiceProcess[]) {
  return waitFor(
    async () => {
      const [request] = await database.db
        .select()
        .from(patchRequests)
        .where(eq(patchRequests.id, patchRequestId));
      return request!.status === 'ready' ? request : undefined;
    },
    {
      timeoutMs: 60_000,
      describe: () =>
        `the retried preview; output:\n${workers.map((worker) => worker.output()).join('\n---\n')}`,
    },
  );
}

/**
 * Stops the services of earlier tests, whose workers would take this test's jobs with their
 * settings, and adds a pro user.
 */
async function newProUser(login: string) {
  for (const service of services.splice(0)) await service.stop('SIGKILL');
  const [user] = await database.db
    .insert(users)
    .values({ login, plan: 'pro', tokenLimit: 100_000 })
    .returning();
  return user;
}

/** Parses the service's log lines of `event`. */
function logEvents<T>(service: ServiceProcess, event: string): T[] {
  return service
    .output()
    .split('\n')
    .filter((line) => line.includes(`"event":"${event}"`))
    .map((line) => JSON.parse(line) as T);
}

/** Checks that the preview's one ledger row is the retried call, charged with nothing left held. */
async function expectRetryChargedOnce(patchRequestId: string, userId: string) {
  const ledger = await database.db
    .select()
    .from(tokenEvents)
    .where(eq(tokenEvents.patchRequestId, patchRequestId));
  expect(ledger).toHaveLength(1);
  expect(ledger[0]!.idempotencyKey).toMatch(/:attempt-1:groq$/);
  const [after] = await database.db.select().from(users).where(eq(users.id, userId));
  expect(after!.tokensReserved).toBe(0);
  expect(after!.tokensUsed).toBe(ledger[0]!.chargedTokens);
}

describe('worker killed between reserve and settle', () => {
  it('releases the reservation and charges the retried job once', async () => {
    const [user] = await database.db
      .insert(users)
      .values({ login: 'crash', plan: 'pro', tokenLimit: 100_000 })
      .returning();
    // The first call hangs, so the worker is killed while its reservation is open. Its hold
    // expires after 10 s, the least that a call of up to 5 s allows.
    groq.enqueue({ text: fixed, delayMs: 120_000 });
    groq.setHandler(() => ({ text: fixed }));
    const sweepEnv = {
      ...env,
      RESERVATION_TTL_SECONDS: '10',
      LLM_TIMEOUT_MS: '5000',
      LLM_MAX_RETRIES: '0',
    };

    const first = await startServiceProcess(sweepEnv);
    services.push(first);
    const patchRequestId = await queuePreview(user!.id, 1);

    await waitFor(async () => groq.requests.length === 1, {
      timeoutMs: 30_000,
      describe: () => `the first model call; output:\n${first.output()}`,
    });
    const [held] = await database.db.select().from(users).where(eq(users.id, user!.id));
    expect(held!.tokensReserved).toBeGreaterThan(0);
    const heldReservations = await database.db.select().from(tokenReservations);
    expect(heldReservations).toHaveLength(1);
    expect(heldReservations[0]!.tokens).toBe(held!.tokensReserved);

    await first.stop('SIGKILL');
    // Let the reservation pass its expiry before another worker starts.
    await new Promise((resolve) => setTimeout(resolve, 10_500));

    const second = await startServiceProcess(sweepEnv);
    services.push(second);
    const finished = await waitForReadyPreview(patchRequestId, [first, second]);

    expect(second.output()).toContain('"event":"job.sweep_reservations.released"');
    const completions = groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    expect(completions).toHaveLength(2);
    const retriedUsage = completions[1]!.reply!.usage!.total_tokens;

    const ledger = await database.db
      .select()
      .from(tokenEvents)
      .where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger).toHaveLength(1);
    expect(ledger[0]!.idempotencyKey).toMatch(/:attempt-1:groq$/);
    expect(ledger[0]!.chargedTokens).toBe(retriedUsage);

    const [after] = await database.db.select().from(users).where(eq(users.id, user!.id));
    expect(after!.tokensReserved).toBe(0);
    expect(after!.tokensUsed).toBe(retriedUsage);
    expect(finished.totalTokens).toBe(retriedUsage);
    expect(await database.db.select().from(tokenReservations)).toHaveLength(0);
  }, 120_000);

  it('retries a dead worker\'s job at once', async () => {
    const user = await newProUser('crash-recovery');
    groq.enqueue({ text: fixed, delayMs: 120_000 });
    groq.setHandler(() => ({ text: fixed }));
    const callsBefore = groq.requests.length;
    // The job's and the hold's expiries are far away, so only the dead worker's missing
    // liveness lock can bring the job back within the test's time.
    const recoveryEnv = {
      ...env,
      RESERVATION_TTL_SECONDS: '900',
      PREVIEW_JOB_TIMEOUT_SECONDS: '1800',
      JOB_RECOVERY_SECONDS: '2',
    };

    const first = await startServiceProcess(recoveryEnv);
    services.push(first);
    const patchRequestId = await queuePreview(user!.id, 2);
    await waitFor(async () => groq.requests.length === callsBefore + 1, {
      timeoutMs: 30_000,
      describe: () => `the first model call; output:\n${first.output()}`,
    });
    const [held] = await database.db.select().from(users).where(eq(users.id, user!.id));
    expect(held!.tokensReserved).toBeGreaterThan(0);

    // While the worker lives, its liveness lock keeps a recovery pass off its job.
    const logger = createLogger('silent');
    const boss = await startBoss(database.url, logger);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const whileAlive = await recoverDeadJobs(
        { db: database.db, boss, logger } as unknown as AppContext,
        { minimumAgeSeconds: 1, confirmDelayMs: 10 },
      );
      expect(whileAlive).toEqual({ retried: 0, failed: 0, releasedTokens: 0 });
    } finally {
      await boss.stop({ graceful: false, wait: true });
    }

    await first.stop('SIGKILL');
    const second = await startServiceProcess(recoveryEnv);
    services.push(second);
    await waitForReadyPreview(patchRequestId, [first, second]);

    const recovered = logEvents<{ retried: number; failed: number; releasedTokens: number }>(
      second,
      'job.recover_jobs',
    );
    expect(recovered).toHaveLength(1);
    expect(recovered[0]!.retried).toBe(1);
    expect(recovered[0]!.failed).toBe(0);
    expect(recovered[0]!.releasedTokens).toBe(held!.tokensReserved);
    expect(second.output()).toContain('"event":"jobs.dead_worker"');
    expect(second.output()).not.toContain('"event":"job.sweep_reservations.released"');
    // The killed worker's log names the job it held, and the retry's names the next attempt.
    type StartedLine = { queue: string; jobId: string; attempt: number; patchRequestId?: string };
    const startedPreviews = (service: ServiceProcess) =>
      logEvents<StartedLine>(service, 'job.started').filter((line) => line.queue === 'preview');
    const killed = startedPreviews(first);
    expect(killed).toHaveLength(1);
    expect(killed[0]!.patchRequestId).toBe(patchRequestId);
    expect(killed[0]!.attempt).toBe(0);
    const retried = startedPreviews(second);
    expect(retried).toHaveLength(1);
    expect(retried[0]!.jobId).toBe(killed[0]!.jobId);
    expect(retried[0]!.attempt).toBe(1);
    await expectRetryChargedOnce(patchRequestId, user!.id);
  }, 120_000);
});

describe('service stopped during a preview', () => {
  const stopEnv = () => ({
    ...env,
    RESERVATION_TTL_SECONDS: '900',
    PREVIEW_JOB_TIMEOUT_SECONDS: '1800',
    SHUTDOWN_TIMEOUT_SECONDS: '1',
  });

  /** Starts a service, queues a preview whose model call hangs, and returns once the call is made. */
  async function previewInFlight(login: string, prNumber: number, retryLimit?: number) {
    const user = await newProUser(login);
    groq.enqueue({ text: fixed, delayMs: 120_000 });
    groq.setHandler(() => ({ text: fixed }));
    const callsBefore = groq.requests.length;
    const patchRequestId = await queuePreview(user!.id, prNumber);
    if (retryLimit !== undefined) {
      await database.db.execute(
        sql`UPDATE pgboss.job SET retry_limit = ${retryLimit} WHERE data->>'patchRequestId' = ${patchRequestId}`,
      );
    }
    const service = await startServiceProcess(stopEnv());
    services.push(service);
    await waitFor(async () => groq.requests.length === callsBefore + 1, {
      timeoutMs: 30_000,
      describe: () => `the first model call; output:\n${service.output()}`,
    });
    const [held] = await database.db.select().from(users).where(eq(users.id, user!.id));
    return { userId: user!.id, patchRequestId, service, held: held!.tokensReserved };
  }

  it('releases the holds for the retry', async () => {
    const { userId, patchRequestId, service, held } = await previewInFlight('stopped', 3);
    expect(held).toBeGreaterThan(0);

    await service.stop('SIGTERM');

    expect(service.process.exitCode).toBe(0);
    const interrupted = logEvents<{ lastAttempt: boolean; releasedTokens: number; attempt: number }>(
      service,
      'jobs.interrupted',
    );
    expect(interrupted).toHaveLength(1);
    expect(interrupted[0]!.attempt).toBe(0);
    expect(interrupted[0]!.lastAttempt).toBe(false);
    // The aborted call releases its own hold, and the clean-up releases what is left.
    const ended = logEvents<{ stopping: boolean }>(service, 'preview.attempt_ended');
    expect(ended).toHaveLength(1);
    expect(ended[0]!.stopping).toBe(true);
    expect(service.output()).not.toContain('"event":"job.preview.failed"');
    const [afterStop] = await database.db.select().from(users).where(eq(users.id, userId));
    expect(afterStop!.tokensReserved).toBe(0);
    expect(await database.db.select().from(tokenReservations)).toHaveLength(0);

    const next = await startServiceProcess(stopEnv());
    services.push(next);
    await waitForReadyPreview(patchRequestId, [service, next]);
    await expectRetryChargedOnce(patchRequestId, userId);
  }, 120_000);

  it('fails the preview of a last attempt', async () => {
    const { userId, patchRequestId, service } = await previewInFlight('stopped-last', 4, 0);

    await service.stop('SIGTERM');

    const [request] = await database.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('failed');
    expect(request!.error).toContain('The service stopped while it ran.');
    const [after] = await database.db.select().from(users).where(eq(users.id, userId));
    expect(after!.tokensReserved).toBe(0);
    expect(after!.tokensUsed).toBe(0);
  }, 120_000);

  it('leaves no hold between files', async () => {
    const user = await newProUser('stopped-many');
    groq.reset();
    groq.setHandler(() => ({ text: fixed, delayMs: 1500 }));
    const patchRequestId = await queuePreview(user!.id, 5, manyPaths);
    const manyEnv = { ...stopEnv(), PREVIEW_FILE_CONCURRENCY: '4' };
    const service = await startServiceProcess(manyEnv);
    services.push(service);
    await waitFor(async () => groq.requests.length >= 5, {
      timeoutMs: 30_000,
      describe: () => `five model calls; output:\n${service.output()}`,
    });

    await service.stop('SIGTERM');

    expect(service.process.exitCode).toBe(0);
    const [afterStop] = await database.db.select().from(users).where(eq(users.id, user!.id));
    expect(afterStop!.tokensReserved).toBe(0);
    expect(await database.db.select().from(tokenReservations)).toHaveLength(0);
    const [stopped] = await database.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(stopped!.filesDone).toBeLessThan(manyPaths.length);
    // The stop aborted the calls in flight, and their files wait for the retry instead of failing.
    const ended = logEvents<{ stopping: boolean }>(service, 'preview.attempt_ended');
    expect(ended.map((line) => line.stopping)).toEqual([true]);
    const stoppedFiles = await database.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId));
    expect(stoppedFiles.filter((file) => file.status === 'failed')).toEqual([]);

    const next = await startServiceProcess(manyEnv);
    services.push(next);
    const finished = await waitForReadyPreview(patchRequestId, [service, next]);
    expect(finished.filesDone).toBe(manyPaths.length);
    const ledger = await database.db
      .select()
      .from(tokenEvents)
      .where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger.map((row) => row.path).sort()).toEqual([...manyPaths].sort());
    const [after] = await database.db.select().from(users).where(eq(users.id, user!.id));
    expect(after!.tokensReserved).toBe(0);
    expect(after!.tokensUsed).toBe(ledger.reduce((sum, row) => sum + row.chargedTokens, 0));
  }, 120_000);
});
