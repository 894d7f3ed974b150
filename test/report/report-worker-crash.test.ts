// A worker killed while GitHub carries out one of its report requests: the job comes back
// through the recovery pass, and the retry continues from what GitHub stored, so the check run
// gets each annotation once.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings, installations, prRuns, users } from '../../src/db/schema/index.ts';
import { startBoss } from '../../src/jobs/boss.ts';
import { reportQueue } from '../../src/jobs/report.ts';
import { createQueues } from '../../src/jobs/workers.ts';
import { createLogger } from '../../src/logger.ts';
import {
  generateAppKeyPair,
  startFakeGitHub,
  type FakeGitHub,
} from '../../src/demo/fakes/github.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import { createGitRepository, type GitRepository } from '../../src/demo/git-repository.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { waitFor } from '../helpers/process.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

const appId = '9090';
const installationId = 41;
const findingCount = 120;

let database: TestDatabase;
let repository: GitRepository;
let github: FakeGitHub;
let env: NodeJS.ProcessEnv;
const services: ServiceProcess[] = [];
/** Updates of a check run that the fake carries out and then never responds to. */
let updatesToHang = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  repository = await createGitRepository({
    base: { 'README.md': '#\n' },
    head: { 'src/x.ts': 'export const x = 1;\n' },
  });
  const keys = generateAppKeyPair();
  github = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  github.setInstallation({ id: installationId, account: { login: 'crash', id: 4, type: 'User' } });
  github.addRepository({ owner: 'crash', repo: 'report', id: 909, gitDir: repository.dir });
  github.addPullRequest({
    owner: 'crash',
    repo: 'report',
    number: 1,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: 'feature',
    title: 'Crash the report',
  });
  const update = checkRoutes.find(
    (route) => route.method === 'PATCH' && route.pattern.endsWith('/check-runs/:check_run_id'),
  )!;
  github.addRoute({
    ...update,
    async handle(context) {
      const response = await update.handle(context);
      if (updatesToHang === 0) return response;
      updatesToHang -= 1;
      return new Promise(() => {});
    },
  });
  env = {
    DATABASE_URL: database.url,
    APP_ID: appId,
    PRIVATE_KEY: keys.privateKeyPem,
    GITHUB_API_URL: github.url,
    JOB_MAINTENANCE_INTERVAL_SECONDS: '1',
    JOB_RECOVERY_SECONDS: '2',
  };
}, 60_000);

afterAll(async () => {
  for (const service of services) await service.stop('SIGKILL');
  await github?.close();
  await repository?.cleanup();
  await database?.close();
});

/** Inserts a completed run with `findingCount` warnings and queues its report job. */
async function queueReport(): Promise<string> {
  const [user] = await database.db.insert(users).values({ login: 'crash-report' }).returning();
  await database.db.insert(installations).values({
    id: installationId,
    accountLogin: 'crash',
    accountId: 4,
    accountType: 'User',
    userId: user!.id,
  });
  const [run] = await database.db
    .insert(prRuns)
    .values({
      installationId,
      repositoryId: 909,
      repository: 'crash/report',
      prNumber: 1,
      baseSha: repository.baseSha,
      headSha: repository.headSha,
      headRef: 'feature',
      headRepository: 'crash/report',
      status: 'completed',
    })
    .returning();
  await database.db.insert(findings).values(
    Array.from({ length: findingCount }, (_, index) => ({
      runId: run!.id,
      path: 'src/x.ts',
      startLine: index + 1,
      endLine: index + 1,
      ruleId: 'debug/console-log',
      severity: 'warning' as const,
      message: 'Remove the console.log call.',
      fingerprint: `report-crash-${index}`,
    })),
  );
  const boss = await startBoss(database.url, createLogger('silent'));
  try {
    await createQueues(boss);
    await boss.send(reportQueue, { runId: run!.id });
  } finally {
    await boss.stop({ graceful: false, wait: true });
  }
  return run!.id;
}

describe('worker killed during a report', () => {
  it('annotates each finding once after recovery', async () => {
    updatesToHang = 1;
    const first = await startServiceProcess(env);
    services.push(first);
    const runId = await queueReport();

    // The first update has added its annotations on GitHub, but its response never arrives.
    await waitFor(async () => updatesToHang === 0, {
      timeoutMs: 30_000,
      describe: () => `the first check run update; output:\n${first.output()}`,
    });
    const [during] = await database.db.select().from(prRuns).where(eq(prRuns.id, runId));
    expect(during!.checkRunAnnotations).toBe(50);
    await first.stop('SIGKILL');

    const second = await startServiceProcess(env);
    services.push(second);
    await waitFor(
      async () => {
        const [run] = await database.db.select().from(prRuns).where(eq(prRuns.id, runId));
        return run!.reportedAt !== null;
      },
      {
        timeoutMs: 60_000,
        describe: () => `the retried report; output:\n${first.output()}\n---\n${second.output()}`,
      },
    );

    const created = github.checkRuns.filter((checkRun) => checkRun.externalId === runId);
    expect(created).toHaveLength(1);
    const lines = created[0]!.annotations.map((annotation) => annotation.start_line);
    expect(lines).toEqual(Array.from({ length: findingCount }, (_, index) => index + 1));
    expect(github.issueComments).toHaveLength(1);
    expect(second.output()).toContain('"event":"jobs.dead_worker"');
  }, 120_000);
});
