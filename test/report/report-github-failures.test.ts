// Reporting when GitHub fails part-way or rejects a request. A write that GitHub carried out but
// whose response was lost is not repeated, so the pull request gets one check run with each
// annotation once and one summary comment. A rejection is stored with the request and what to do.
import { RequestError } from '@octokit/request-error';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { checkRoutes } from '../../src/demo/fakes/github/checks.ts';
import { issueCommentRoutes } from '../../src/demo/fakes/github/issue-comments.ts';
import type { Route } from '../../src/demo/fakes/github/router.ts';
import type { FakeState } from '../../src/demo/fakes/github/state.ts';
import {
  describeReportError,
  recordReportError,
  reportRun,
} from '../../src/report/report-run.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertWarnedRun,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { failAfterWork } from '../helpers/lost-response.ts';

let setup: GitHubTestContext;

/** 502 responses to send after the fake's own handler did the work, per route. */
const afterWork = { createCheckRun: 0, updateCheckRun: 0, createComment: 0 };

function routeOf(routes: Route<FakeState>[], method: string, pattern: string): Route<FakeState> {
  return routes.find((route) => route.method === method && route.pattern === pattern)!;
}

const completedRun = (findingLines: number) => insertWarnedRun(setup, findingLines);

/** Runs the report the way the job does: attempts until one succeeds, at most `attempts`. */
async function reportWithRetries(runId: string, attempts = 3) {
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      return await reportRun(setup.context, runId, setup.context.logger);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
  const checkRunsPath = '/repos/:owner/:repo/check-runs';
  setup.fake.addRoute(
    failAfterWork(routeOf(checkRoutes, 'POST', checkRunsPath), afterWork, 'createCheckRun'),
  );
  setup.fake.addRoute(
    failAfterWork(
      routeOf(checkRoutes, 'PATCH', `${checkRunsPath}/:check_run_id`),
      afterWork,
      'updateCheckRun',
    ),
  );
  setup.fake.addRoute(
    failAfterWork(
      routeOf(issueCommentRoutes, 'POST', '/repos/:owner/:repo/issues/:issue_number/comments'),
      afterWork,
      'createComment',
    ),
  );
});

beforeEach(async () => {
  afterWork.createCheckRun = 0;
  afterWork.updateCheckRun = 0;
  afterWork.createComment = 0;
  for (const comment of setup.fake.issueComments) setup.fake.removeIssueComment(comment.id);
  await setup.context.database.sql`DELETE FROM summary_comments`;
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
});

describe('report after a lost response', () => {
  it('creates one check run', async () => {
    const run = await completedRun(3);
    afterWork.createCheckRun = 1;

    await reportWithRetries(run.id);

    const created = setup.fake.checkRuns.filter((candidate) => candidate.externalId === run.id);
    expect(created).toHaveLength(1);
    expect(created[0]!.annotations).toHaveLength(3);
  }, 60_000);

  it('sends each annotation once', async () => {
    const run = await completedRun(120);
    afterWork.updateCheckRun = 1;

    await reportWithRetries(run.id);

    const created = setup.fake.checkRuns.filter((candidate) => candidate.externalId === run.id);
    expect(created).toHaveLength(1);
    const lines = created[0]!.annotations.map((annotation) => annotation.start_line);
    expect(lines).toEqual(Array.from({ length: 120 }, (_, index) => index + 1));
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunAnnotations).toBe(120);
  }, 60_000);

  it('resumes from the annotations GitHub stores', async () => {
    const run = await completedRun(120);
    await reportRun(setup.context, run.id, setup.context.logger);
    // As if an attempt had died after an update, before it stored the count.
    await setup.context.db
      .update(prRuns)
      .set({ checkRunAnnotations: 50, reportedAt: null })
      .where(eq(prRuns.id, run.id));

    await reportRun(setup.context, run.id, setup.context.logger);

    const created = setup.fake.checkRuns.filter((candidate) => candidate.externalId === run.id);
    expect(created[0]!.annotations).toHaveLength(120);
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.checkRunAnnotations).toBe(120);
  }, 60_000);

  it('keeps its count over a lower one from GitHub', async () => {
    const run = await completedRun(120);
    await reportRun(setup.context, run.id, setup.context.logger);
    // As if an attempt had died after the second update and stored its count.
    const created = setup.fake.checkRuns.find((candidate) => candidate.externalId === run.id)!;
    created.annotations.splice(100);
    await setup.context.db
      .update(prRuns)
      .set({ checkRunAnnotations: 100, reportedAt: null })
      .where(eq(prRuns.id, run.id));
    // A read that does not yet count the second update.
    setup.fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/check-runs/:check_run_id',
      status: 200,
      body: { id: created.id, output: { annotations_count: 50, text: null } },
    });

    await reportRun(setup.context, run.id, setup.context.logger);

    const lines = created.annotations.map((annotation) => annotation.start_line);
    expect(lines).toEqual(Array.from({ length: 120 }, (_, index) => index + 1));
  }, 60_000);

  it('posts one summary comment', async () => {
    const run = await completedRun(1);
    afterWork.createComment = 1;

    await reportWithRetries(run.id);

    expect(setup.fake.issueComments).toHaveLength(1);
    expect(setup.fake.issueComments[0]!.body).toContain(run.headSha.slice(0, 7));
  }, 60_000);
});

describe('report under rate limits', () => {
  it('waits out a secondary rate limit', async () => {
    const run = await completedRun(2);
    setup.fake.queueResponse(
      secondaryRateLimitError('POST', '/repos/:owner/:repo/check-runs', 1),
    );
    setup.fake.queueResponse(
      secondaryRateLimitError('POST', '/repos/:owner/:repo/issues/:issue_number/comments', 1),
    );

    const outcome = await reportRun(setup.context, run.id, setup.context.logger);

    expect(outcome.status).toBe('reported');
    const created = setup.fake.checkRuns.filter((candidate) => candidate.externalId === run.id);
    expect(created).toHaveLength(1);
    expect(setup.fake.issueComments).toHaveLength(1);
  }, 60_000);
});

describe('report rejected by GitHub', () => {
  it('names the request and the permission', async () => {
    const run = await completedRun(1);
    setup.fake.queueResponse({
      method: 'POST',
      path: '/repos/:owner/:repo/check-runs',
      status: 403,
      body: {
        message: 'Resource not accessible by integration',
        documentation_url: 'https://docs.github.com/rest/checks/runs#create-a-check-run',
        status: '403',
      },
    });

    const error = await reportRun(setup.context, run.id, setup.context.logger).catch(
      (caught: unknown) => caught,
    );
    await recordReportError(setup.context, run.id, error, setup.context.logger);

    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.reportError).toBe(
      'Posting the results to GitHub failed: GitHub returned 403 "Resource not accessible by ' +
        'integration" for POST /repos/octo-org/widgets/check-runs. The GitHub App lacks a ' +
        'permission that reporting needs. Grant Checks: write and Pull requests: write in the ' +
        'GitHub App settings, and have an owner of the account accept the new permissions.',
    );
  });

  it('says when no response arrived', () => {
    // As @octokit/request 10 raises it when fetch fails: status 500 and no response.
    const error = new RequestError('connect ECONNREFUSED 127.0.0.1:9', 500, {
      request: {
        method: 'POST',
        url: 'http://127.0.0.1:9/repos/octo-org/widgets/check-runs',
        headers: {},
      },
    });

    const description = describeReportError(error);

    expect(description).toBe(
      'Posting the results to GitHub failed: POST /repos/octo-org/widgets/check-runs got no ' +
        'response: connect ECONNREFUSED 127.0.0.1:9',
    );
    expect(description).not.toContain('returned 500');
  });
});
