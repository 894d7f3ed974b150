// A "Fix with AI" press on the check run that the run's report has created but not stored yet.
// GitHub shows the button as soon as the check run exists. So the press can come while the
// report waits for the create's response.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchRequests, prRuns, users } from '../../src/db/schema/index.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import {
  fixPressNoticeQueue,
  handleFixPressNoticeJob,
  type FixPressNoticeJobData,
} from '../../src/jobs/fix-press-notice.ts';
import { handleReportJob, reportQueue, type ReportJobData } from '../../src/jobs/report.ts';
import { createApp } from '../../src/web/app.tsx';
import { logsOf } from '../helpers/context.ts';
import { fixPressWebhooks, listNoticeJobs, queuedPreviewText } from '../helpers/fix-press.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertWarnedRun,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { runDueJob } from '../helpers/jobs.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

const secret = 'fix-press-report-wait-secret';
const publicUrl = 'https://fixwright.example.test';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let ownerId: string;
/** While set, the fake creates a check run and delays its response until this resolves. */
let createGate: Promise<void> | null = null;

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
    // A platform key, so that the owner's allowance pays for the preview.
    env: { WEBHOOK_SECRET: secret, PUBLIC_URL: publicUrl, GROQ_API_KEY: 'gsk_report_wait' },
  });
  const [owner] = await setup.context.db.insert(users).values({ login: 'wait-owner' }).returning();
  ownerId = owner!.id;
  await insertInstallation(setup.context, { id: setup.installationId, userId: ownerId });
  app = createApp(setup.context);
  const create = checkRoutes.find(
    (route) => route.method === 'POST' && route.pattern.endsWith('/check-runs'),
  )!;
  setup.fake.addRoute({
    ...create,
    async handle(context) {
      const response = await create.handle(context);
      if (createGate) await createGate;
      return response;
    },
  });
});

afterAll(async () => {
  await setup?.close();
});

const webhooks = fixPressWebhooks({
  setup: () => setup,
  app: () => app,
  secret,
  prefix: 'fix-press-report-wait',
});

const noticeJobs = (runId: string) => listNoticeJobs(setup.context, runId);

/** Creates a completed run with one warning on a new head commit, and queues its report job. */
async function completedRun() {
  const run = await insertWarnedRun(setup, 1);
  const data: ReportJobData = { runId: run.id };
  const reportJobId = (await setup.context.boss.send(reportQueue, data))!;
  await setup.context.db.update(prRuns).set({ reportJobId }).where(eq(prRuns.id, run.id));
  return { run, reportJobId };
}

async function storedRun(runId: string) {
  const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, runId));
  return run!;
}

/** Returns the fake's check runs of the run, oldest first. */
function checkRunsOf(runId: string) {
  return setup.fake.checkRuns.filter((checkRun) => checkRun.externalId.startsWith(runId));
}

const runReportJob = (jobId: string) =>
  runDueJob<ReportJobData>(setup.context, reportQueue, jobId, (job) =>
    handleReportJob(setup.context, job),
  );

const runNoticeJob = (jobId: string) =>
  runDueJob<FixPressNoticeJobData>(setup.context, fixPressNoticeQueue, jobId, (job) =>
    handleFixPressNoticeJob(setup.context, job),
  );

/** Returns the one completion log line of notice job `jobId`. */
function completionOf(jobId: string) {
  const lines = logsOf(setup.context, 'job.fix_press_notice.completed', { jobId });
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

async function patchRequestOf(runId: string) {
  const requests = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.runId, runId));
  expect(requests).toHaveLength(1);
  return requests[0]!;
}

describe('fix press notice before the report stores its check run', () => {
  it('waits for the report that is creating it', async () => {
    const { run, reportJobId } = await completedRun();
    let openGate = () => {};
    createGate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    try {
      // The report creates the check run and waits for GitHub's response under its lock.
      const report = runReportJob(reportJobId);
      let checkRun = checkRunsOf(run.id)[0];
      for (let waited = 0; !checkRun && waited < 10_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        checkRun = checkRunsOf(run.id)[0];
      }
      expect(checkRun).toBeDefined();
      await webhooks.press(checkRun!.id);
      const [job] = await noticeJobs(run.id);

      const notice = runNoticeJob(job!.id);
      await waitForLockWait(setup.context);
      expect((await storedRun(run.id)).checkRunId).toBeNull();
      openGate();
      await report;
      await notice;

      expect((await storedRun(run.id)).checkRunId).toBe(checkRun!.id);
      expect(completionOf(job!.id).status).toBe('updated');
      const request = await patchRequestOf(run.id);
      expect(checkRun!.output.text).toBe(queuedPreviewText(job!.data, publicUrl, request.id));
      expect(checkRun!.annotations).toHaveLength(1);
      expect(checkRunsOf(run.id)).toHaveLength(1);
    } finally {
      openGate();
      createGate = null;
    }
  });
});
