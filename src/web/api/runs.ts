import { Hono } from 'hono';
import { z } from 'zod';
import type { AppContext } from '../../context.ts';
import { maxInteger } from '../../db/schema/columns.ts';
import { listRunFindings } from '../../runs/run-findings.ts';
import { runRateLimitWait } from '../../runs/run-rate-limit.ts';
import {
  findVisibleRunWithInstallation,
  listVisibleRuns,
  type RunInstallation,
} from '../../runs/visible-runs.ts';
import type { AuthVariables } from '../auth.ts';
import { installationJson } from './installation-json.ts';
import { notFound } from '../errors.ts';
import { parseInput, rejectRepeatedQuery } from '../validation.ts';

/**
 * Parses a query value of decimal digits into a number. Number() alone would also read `0x10`,
 * `1e3` and ` 12`.
 */
const decimalDigits = z.string().regex(/^\d+$/).transform(Number);

const listQuery = z.object({
  repository: z
    .string()
    .max(201)
    .regex(/^[^/\s]{1,100}\/[^/\s]{1,100}$/)
    .describe('OWNER/NAME such as octo-org/widgets, each part at most 100 characters')
    .optional(),
  pr: decimalDigits
    .pipe(z.number().int().positive().max(maxInteger))
    .describe('a pull request number such as 12')
    .optional(),
  limit: decimalDigits
    .pipe(z.number().int().min(1).max(200))
    .describe('a whole number from 1 to 200')
    .default(50),
});

type Run = NonNullable<Awaited<ReturnType<typeof findVisibleRunWithInstallation>>>['run'];

function runSummary(run: Run, installation: RunInstallation) {
  return {
    id: run.id,
    repository: run.repository,
    pullRequest: run.prNumber,
    title: run.prTitle,
    status: run.status,
    error: run.error,
    headSha: run.headSha,
    baseSha: run.baseSha,
    baseRef: run.baseRef,
    headRef: run.headRef,
    createdAt: run.createdAt.toISOString(),
    completedAt: run.completedAt?.toISOString() ?? null,
    checkRunId: run.checkRunId,
    reportedAt: run.reportedAt?.toISOString() ?? null,
    reportError: run.reportError,
    pullRequestClosedAt: run.prClosedAt?.toISOString() ?? null,
    rateLimitWait: rateLimitWaitJson(run),
    installation: installationJson(run.installationId, installation),
  };
}

/** The run's job that waits for a GitHub rate limit, by queue name, and when the limit lifts. */
function rateLimitWaitJson(run: Run): { job: string; until: string } | null {
  const wait = runRateLimitWait(run);
  return wait && { job: wait.queue, until: wait.until.toISOString() };
}

/** `GET /api/runs` and `GET /api/runs/:runId`, limited to the caller's installations. */
export function runRoutes(context: AppContext): Hono<{ Variables: AuthVariables }> {
  const app = new Hono<{ Variables: AuthVariables }>();

  app.get('/api/runs', async (c) => {
    rejectRepeatedQuery(c.req.queries(), Object.keys(listQuery.shape));
    const { repository, pr, limit } = parseInput(listQuery, c.req.query(), 'query');

    const runs = await listVisibleRuns(context.db, c.var.user.id, {
      repository,
      prNumber: pr,
      limit,
    });
    return c.json({ runs: runs.map((row) => runSummary(row.run, row.installation)) });
  });

  app.get('/api/runs/:runId', async (c) => {
    const runId = c.req.param('runId').toLowerCase();
    const found = await findVisibleRunWithInstallation(context.db, c.var.user.id, runId);
    if (!found) throw notFound('Run', runId);
    const { run, installation } = found;

    const rows = await listRunFindings(context.db, run.id);
    return c.json({
      ...runSummary(run, installation),
      uncheckedFiles: run.uncheckedFiles,
      uncheckedFileReasons: run.uncheckedFileReasons,
      unlistedFiles: run.unlistedFiles,
      omittedFindings: run.omittedFindings,
      findings: rows.map((finding) => ({
        id: finding.id,
        rule: finding.ruleId,
        severity: finding.severity,
        path: finding.path,
        line: finding.startLine,
        endLine: finding.endLine,
        message: finding.message,
        excerpt: finding.excerpt,
      })),
    });
  });

  return app;
}
