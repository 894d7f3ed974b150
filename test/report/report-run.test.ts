import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { checkConclusion } from '../../src/report/check-conclusion.ts';
import { reportRun } from '../../src/report/report-run.ts';
import { summaryMarker } from '../../src/report/summary-markdown.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import {
  appId,
  createGitHubTestContext,
  insertFindings,
  insertInstallation,
  insertRun,
  owner,
  prNumber,
  repo,
  repositoryId,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

let setup: GitHubTestContext;

const checkRunsPath = /^\/repos\/octo-org\/widgets\/check-runs(\/\d+)?$/;
const commentsPath = /^\/repos\/octo-org\/widgets\/issues\/(\d+\/comments|comments\/\d+)$/;

function requests(method: string, path: RegExp) {
  return setup.fake.requests.filter(
    (request) => request.method === method && path.test(request.path),
  );
}

/** Commits on the head branch and returns the sha, so each run of a test has its own. */
async function newHeadSha(): Promise<string> {
  const note = `notes/${Date.now()}-${Math.random()}.txt`;
  return commitOnBranch(setup.git.dir, headBranch, { [note]: 'x\n' });
}

async function completedRun(
  findingLines: number,
  severity: 'error' | 'warning' | 'notice' = 'warning',
) {
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: await newHeadSha(),
    baseSha: setup.git.baseSha,
  });
  await insertFindings(
    setup.context,
    run.id,
    Array.from({ length: findingLines }, (_, index) => ({
      path: 'src/app.ts',
      line: index + 1,
      severity,
    })),
  );
  return run;
}

async function markSuperseded(runId: string) {
  await setup.context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, runId));
}

function clearComments() {
  for (const comment of setup.fake.issueComments) setup.fake.removeIssueComment(comment.id);
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterAll(async () => {
  await setup?.close();
});

describe('checkConclusion', () => {
  it.each([
    ['error', 'failure'],
    ['warning', 'neutral'],
    ['notice', 'success'],
    [undefined, 'success'],
  ] as const)('maps %s to %s', (severity, conclusion) => {
    expect(checkConclusion(severity)).toBe(conclusion);
  });
});

describe('reportRun check run', () => {
  it('creates a failing check run for errors', async () => {
    const run = await completedRun(2, 'error');
    const outcome = await reportRun(setup.context, run.id, setup.context.logger);

    expect(outcome.status).toBe('reported');
    const checkRun = setup.fake.checkRuns.find((candidate) => candidate.externalId === run.id)!;
    expect(checkRun.name).toBe('Fixwright');
    expect(checkRun.headSha).toBe(run.headSha);
    expect(checkRun.status).toBe('completed');
    expect(checkRun.conclusion).toBe('failure');
    expect(checkRun.output.title).toBe('2 errors');
    expect(checkRun.annotations.map((annotation) => annotation.start_line)).toEqual([1, 2]);
    expect(checkRun.annotations[0]?.annotation_level).toBe('failure');
    expect(checkRun.annotations[0]?.path).toBe('src/app.ts');
    expect(checkRun.actions).toEqual([
      { label: 'Fix with AI', description: 'Preview fixes for these findings', identifier: 'fix' },
    ]);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunId).toBe(checkRun.id);
    expect(stored!.reportedAt).not.toBeNull();
  });

  it('links the check run to the dashboard', async () => {
    const config = setup.context.config as { PUBLIC_URL?: string };
    config.PUBLIC_URL = 'https://fixwright.example.test';
    try {
      const run = await completedRun(1, 'warning');
      await reportRun(setup.context, run.id, setup.context.logger);
      const checkRun = setup.fake.checkRuns.find((candidate) => candidate.externalId === run.id)!;
      expect(checkRun.detailsUrl).toBe(`https://fixwright.example.test/runs/${run.id}`);
    } finally {
      delete config.PUBLIC_URL;
    }
  });

  it('succeeds without findings or action', async () => {
    const run = await completedRun(0);
    await reportRun(setup.context, run.id, setup.context.logger);
    const checkRun = setup.fake.checkRuns.find((candidate) => candidate.externalId === run.id)!;
    expect(checkRun.conclusion).toBe('success');
    expect(checkRun.output.title).toBe('No findings');
    expect(checkRun.actions).toEqual([]);
  });

  it('sends 120 annotations in three requests', async () => {
    const run = await completedRun(120);
    const before = setup.fake.requests.length;
    await reportRun(setup.context, run.id, setup.context.logger);

    const sent = setup.fake.requests
      .slice(before)
      .filter((request) => checkRunsPath.test(request.path) && request.method !== 'GET');
    expect(sent.map((request) => request.method)).toEqual(['POST', 'PATCH', 'PATCH']);
    const sizes = sent.map(
      (request) =>
        (request.body as { output: { annotations: unknown[] } }).output.annotations.length,
    );
    expect(sizes).toEqual([50, 50, 20]);
    const checkRun = setup.fake.checkRuns.find((candidate) => candidate.externalId === run.id)!;
    expect(checkRun.annotations).toHaveLength(120);
    expect(checkRun.annotations.map((annotation) => annotation.start_line)).toEqual(
      Array.from({ length: 120 }, (_, index) => index + 1),
    );
    expect(checkRun.conclusion).toBe('neutral');
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunAnnotations).toBe(120);
  });

  it('annotates at most 1000 findings, errors first', async () => {
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: await newHeadSha(),
      baseSha: setup.git.baseSha,
    });
    const notices = Array.from({ length: 1500 }, (_, index) => ({
      path: 'src/app.ts',
      line: index + 1,
      severity: 'notice' as const,
    }));
    await insertFindings(setup.context, run.id, [
      ...notices,
      { path: 'src/app.ts', line: 2000, severity: 'error' },
    ]);
    const before = setup.fake.requests.length;

    await reportRun(setup.context, run.id, setup.context.logger);

    const sent = setup.fake.requests
      .slice(before)
      .filter((request) => checkRunsPath.test(request.path) && request.method !== 'GET');
    expect(sent).toHaveLength(20);
    const checkRun = setup.fake.checkRuns.find((candidate) => candidate.externalId === run.id)!;
    expect(checkRun.annotations).toHaveLength(1000);
    expect(checkRun.annotations[0]?.start_line).toBe(2000);
    expect(checkRun.annotations[0]?.annotation_level).toBe('failure');
    expect(checkRun.annotations.at(-1)?.start_line).toBe(999);
    expect(checkRun.output.summary).toContain(
      'The first 1,000 of the 1,501 findings, errors first, are annotated on their lines, ' +
        "and the run's page on the Fixwright dashboard lists all of them.",
    );
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunAnnotations).toBe(1000);
    expect(setup.fake.issueComments.at(-1)!.body).toContain(
      "1471 more findings on the run's page of the Fixwright dashboard; the check run " +
        'annotates the first 1,000, errors first.',
    );
  }, 60_000);

  it('reuses an unrecorded check run on retry', async () => {
    const run = await completedRun(40);
    await reportRun(setup.context, run.id, setup.context.logger);
    // As if the attempt had died after GitHub created the check run but before it was stored.
    await setup.context.db
      .update(prRuns)
      .set({ checkRunId: null, checkRunAnnotations: 0 })
      .where(eq(prRuns.id, run.id));
    await reportRun(setup.context, run.id, setup.context.logger);

    const created = setup.fake.checkRuns.filter((candidate) => candidate.externalId === run.id);
    expect(created).toHaveLength(1);
    expect(created[0]!.annotations).toHaveLength(40);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunId).toBe(created[0]!.id);
  });

  it("creates its own over another app's check run", async () => {
    const run = await completedRun(2);
    // Another app on the repository can create a check run with this name and external id.
    const foreign = setup.fake.addForeignCheckRun({
      owner,
      repo,
      name: 'Fixwright',
      headSha: run.headSha,
      externalId: run.id,
      app: { id: 999, slug: 'copycat', name: 'Copycat' },
    });
    await reportRun(setup.context, run.id, setup.context.logger);

    const own = setup.fake.checkRuns.filter(
      (candidate) => candidate.externalId === run.id && candidate.app.id === Number(appId),
    );
    expect(own).toHaveLength(1);
    expect(own[0]!.annotations).toHaveLength(2);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunId).toBe(own[0]!.id);
    const untouched = setup.fake.checkRuns.find((candidate) => candidate.id === foreign.id);
    expect(untouched!.annotations).toHaveLength(0);
    expect(untouched!.output.title).toBe('Passed');
  });

  it("ignores another app's listed check run", async () => {
    const run = await completedRun(1);
    // A listing that ignores `app_id` still names each check run's app.
    setup.fake.queueResponse({
      method: 'GET',
      path: `/repos/${owner}/${repo}/commits/${run.headSha}/check-runs`,
      status: 200,
      body: {
        total_count: 1,
        check_runs: [
          {
            id: 77,
            external_id: run.id,
            app: { id: 999, slug: 'copycat', name: 'Copycat' },
            output: { annotations_count: 0, text: null },
          },
        ],
      },
    });
    await reportRun(setup.context, run.id, setup.context.logger);

    const own = setup.fake.checkRuns.filter((candidate) => candidate.externalId === run.id);
    expect(own).toHaveLength(1);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunId).toBe(own[0]!.id);
    expect(stored!.checkRunId).not.toBe(77);
  });

  it('creates one check run for concurrent attempts', async () => {
    const run = await completedRun(3);
    await Promise.all([
      reportRun(setup.context, run.id, setup.context.logger),
      reportRun(setup.context, run.id, setup.context.logger),
    ]);

    const created = setup.fake.checkRuns.filter((candidate) => candidate.externalId === run.id);
    expect(created).toHaveLength(1);
    expect(created[0]!.annotations).toHaveLength(3);
  });

  it('skips a superseded run', async () => {
    const run = await completedRun(1);
    await markSuperseded(run.id);
    const outcome = await reportRun(setup.context, run.id, setup.context.logger);
    expect(outcome).toEqual({ status: 'skipped', reason: 'run is superseded' });
    expect(setup.fake.checkRuns.some((candidate) => candidate.externalId === run.id)).toBe(false);
  });
});

describe('reportRun summary comment', () => {
  it('edits the comment in place on a second run', async () => {
    clearComments();
    await setup.context.database.sql`DELETE FROM summary_comments`;
    const first = await completedRun(1);
    await reportRun(setup.context, first.id, setup.context.logger);
    await markSuperseded(first.id);
    const second = await completedRun(3);
    await reportRun(setup.context, second.id, setup.context.logger);

    const comments = setup.fake.issueComments;
    expect(comments).toHaveLength(1);
    expect(comments[0]!.issueNumber).toBe(prNumber);
    expect(comments[0]!.body.startsWith(summaryMarker)).toBe(true);
    expect(comments[0]!.body).toContain(second.headSha.slice(0, 7));
    expect(comments[0]!.body).toContain('3 warnings');
    expect(comments[0]!.body).toContain(`/${owner}/${repo}/pull/${prNumber}/checks?check_run_id=`);
    expect(comments[0]!.body).not.toContain(first.headSha.slice(0, 7));
  });

  it('finds the marked comment on page two', async () => {
    clearComments();
    await setup.context.database.sql`DELETE FROM summary_comments`;
    for (let index = 0; index < 120; index++) {
      setup.fake.addIssueComment({ owner, repo, issueNumber: prNumber, body: `comment ${index}` });
    }
    setup.fake.addIssueComment({
      owner,
      repo,
      issueNumber: prNumber,
      body: `A user quoting ${summaryMarker}`,
    });
    const marked = setup.fake.addIssueComment({
      owner,
      repo,
      issueNumber: prNumber,
      body: `${summaryMarker}\nold summary`,
      user: 'fixwright[bot]',
      userType: 'Bot',
      installationId: setup.installationId,
    });
    const before = setup.fake.requests.length;
    const run = await completedRun(1);
    await reportRun(setup.context, run.id, setup.context.logger);

    const listed = setup.fake.requests
      .slice(before)
      .filter((request) => request.method === 'GET' && /\/comments$/.test(request.path));
    expect(listed).toHaveLength(2);
    expect(setup.fake.issueComments).toHaveLength(122);
    expect(setup.fake.issueComments.at(-1)!.id).toBe(marked.id);
    expect(setup.fake.issueComments.at(-1)!.body).toContain(run.headSha.slice(0, 7));
    expect(setup.fake.issueComments.at(-2)!.body).toBe(`A user quoting ${summaryMarker}`);
  });

  it("leaves another bot's marked comment alone", async () => {
    clearComments();
    await setup.context.database.sql`DELETE FROM summary_comments`;
    // Another app's bot that echoes text from the pull request can be made to post the marker.
    const echoed = setup.fake.addIssueComment({
      owner,
      repo,
      issueNumber: prNumber,
      body: `echo-bot quoting: ${summaryMarker}`,
      user: 'echo-bot[bot]',
      userType: 'Bot',
    });
    const run = await completedRun(1);
    await reportRun(setup.context, run.id, setup.context.logger);

    expect(setup.fake.issueComments).toHaveLength(2);
    expect(setup.fake.issueComments[0]!.id).toBe(echoed.id);
    expect(setup.fake.issueComments[0]!.body).toBe(`echo-bot quoting: ${summaryMarker}`);
    expect(setup.fake.issueComments[1]!.user).toBe('fixwright[bot]');
    expect(setup.fake.issueComments[1]!.body).toContain(run.headSha.slice(0, 7));
  });

  it('posts one comment for two concurrent reports', async () => {
    clearComments();
    await setup.context.database.sql`DELETE FROM summary_comments`;
    // A row without a comment id, as an attempt that failed before posting leaves it.
    await setup.context.database.sql`
      INSERT INTO summary_comments (repository_id, pr_number)
      VALUES (${repositoryId}, ${prNumber})`;
    const first = await completedRun(1);
    const second = await completedRun(2);
    const before = setup.fake.requests.length;
    await Promise.all([
      reportRun(setup.context, first.id, setup.context.logger),
      reportRun(setup.context, second.id, setup.context.logger),
    ]);

    const written = setup.fake.requests
      .slice(before)
      .filter((request) => commentsPath.test(request.path) && request.method !== 'GET');
    expect(written.map((request) => request.method).sort()).toEqual(['PATCH', 'POST']);
    expect(setup.fake.issueComments).toHaveLength(1);
  });

  it('posts again after the comment was deleted', async () => {
    const run = await completedRun(1);
    clearComments();
    await reportRun(setup.context, run.id, setup.context.logger);
    expect(setup.fake.issueComments).toHaveLength(1);
    expect(setup.fake.issueComments[0]!.body).toContain(run.headSha.slice(0, 7));
    expect(requests('POST', /\/issues\/\d+\/comments$/).length).toBeGreaterThan(1);
  });
});
