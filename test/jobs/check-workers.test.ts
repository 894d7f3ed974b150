// The installation and pull request checks as startWorkers runs them: with the recovery of a
// dead worker's check, and with several workers per queue, against the fake GitHub.
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installations } from '../../src/db/schema/index.ts';
import {
  confirmInstallationQueue,
  queueInstallationConfirmation,
} from '../../src/jobs/confirm-installation.ts';
import { startWorkers } from '../../src/jobs/workers.ts';
import { logsOf } from '../helpers/context.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

let setup: GitHubTestContext;
let workers: { close(): Promise<void> } | undefined;

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    // The recovery pass at start then takes a job active for 2 s with no lock for dead.
    env: { JOB_RECOVERY_SECONDS: '2' },
  });
});

afterEach(async () => {
  if (workers) {
    // startWorkers' close runs after pg-boss has stopped, as the service does it.
    await setup.context.boss.stop({ graceful: false, wait: true });
    await workers.close();
    workers = undefined;
  }
  await setup?.close();
});

async function start() {
  workers = await startWorkers(setup.context, setup.context.database.url);
}

async function queueInstallationCheck(installationId: number): Promise<string> {
  const id = await setup.context.db.transaction((tx) =>
    queueInstallationConfirmation(tx, setup.context.boss, installationId),
  );
  expect(id).not.toBeNull();
  return id!;
}

/** Makes the job due now, as if its start delay had passed. */
async function makeDue(jobId: string) {
  await setup.context.database.sql`
    UPDATE pgboss.job SET start_after = now() - interval '1 second' WHERE id = ${jobId}`;
}

async function jobState(jobId: string): Promise<string | undefined> {
  const [row] = await setup.context.database.sql<{ state: string }[]>`
    SELECT state FROM pgboss.job WHERE id = ${jobId}`;
  return row?.state;
}

function requestsTo(path: string) {
  return setup.fake.requests.filter((request) => request.method === 'GET' && request.path === path);
}

async function suspendedAt(installationId: number): Promise<Date | null | undefined> {
  const [row] = await setup.context.db
    .select({ suspendedAt: installations.suspendedAt })
    .from(installations)
    .where(eq(installations.id, installationId));
  return row?.suspendedAt;
}

/**
 * Polls `done` every 100 ms until it returns true, and returns the milliseconds that took, or
 * Infinity after `timeoutMs`.
 */
async function waitFor(done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await done()) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Infinity;
}

describe('check of a dead worker', () => {
  it('recovers before the next check', async () => {
    const installationId = setup.installationId;
    // GitHub reports the installation active, so a check that reads it clears this mark.
    await insertInstallation(setup.context, {
      id: installationId,
      suspendedAt: new Date('2024-06-01T09:00:00Z'),
    });
    // A worker took the check 2 minutes ago and was killed, so no session holds its lock.
    const dead = await queueInstallationCheck(installationId);
    await makeDue(dead);
    const [fetched] = await setup.context.boss.fetch(confirmInstallationQueue);
    expect(fetched?.id).toBe(dead);
    await setup.context.database.sql`
      UPDATE pgboss.job SET started_on = now() - interval '2 minutes' WHERE id = ${dead}`;
    // An event queued another check of the installation, which is due now.
    const next = await queueInstallationCheck(installationId);
    await makeDue(next);

    await start();
    const elapsed = await waitFor(async () => (await suspendedAt(installationId)) === null, 30_000);

    // The recovery pass at start confirms the dead job after 2 s. A check fetched before that
    // defers and queues one 10 s later, so the mark is cleared within about 13 s.
    expect(elapsed).toBeLessThan(20_000);
    expect(logsOf(setup.context, 'jobs.dead_worker')).toMatchObject([
      { jobId: dead, queue: confirmInstallationQueue, lastAttempt: false },
    ]);
    // pg-boss retries the dead check after its backoff of at least 15 s.
    expect(await jobState(dead)).toBe('retry');
    expect(requestsTo(`/app/installations/${installationId}`)).toHaveLength(1);
    const completed = logsOf(setup.context, 'job.confirm_installation.completed');
    expect(completed).toMatchObject([{ status: 'corrected' }]);
    expect(completed[0]!.jobId).not.toBe(dead);
    for (const deferred of logsOf(setup.context, 'job.confirm_installation.deferred')) {
      expect(deferred.runningJobId).toBe(dead);
    }
  }, 40_000);
});
