import type { Octokit } from '@octokit/rest';
import { eq } from 'drizzle-orm';
import { compareBySeverity, worstSeverity } from '../analysis/analyze.ts';
import type { Database } from '../db/client.ts';
import { prRuns } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { splitRepository } from '../runs/analyze-run.ts';
import { annotationLevel, checkConclusion, type CheckConclusion } from './check-conclusion.ts';
import {
  checkRunOutput,
  maxAnnotationsPerRun,
  type ReportedFinding,
  type ReportedRun,
} from './summary-markdown.ts';

/** GitHub accepts at most 50 annotations per create or update request of a check run. */
export const maxAnnotationsPerRequest = 50;

/** Picks the findings to annotate: errors, then warnings, then notices, each by path and line. */
export function annotatedFindings(findings: readonly ReportedFinding[]): ReportedFinding[] {
  // Array.prototype.sort is stable, so the path and line order of the rows stays within a level.
  return [...findings].sort(compareBySeverity).slice(0, maxAnnotationsPerRun);
}

export const checkRunName = 'Fixwright';

/** The check run button; its identifier comes back in the `requested_action` webhook event. */
export const fixAction = {
  label: 'Fix with AI',
  description: 'Preview fixes for these findings',
  identifier: 'fix',
} as const;

export interface CheckRunTarget extends ReportedRun {
  id: string;
  checkRunId: number | null;
  checkRunAnnotations: number;
}

export interface PublishedCheckRun {
  checkRunId: number;
  conclusion: CheckConclusion;
  annotations: number;
}

function toAnnotation(finding: ReportedFinding) {
  return {
    path: finding.path,
    start_line: finding.startLine,
    end_line: finding.endLine,
    annotation_level: annotationLevel(finding.severity),
    title: finding.ruleId,
    message: finding.message,
  };
}

/**
 * Finds the check run that an earlier attempt created for this run but did not store, by its
 * external id, so a retried job never creates a second one.
 */
async function findCreatedCheckRun(
  octokit: Octokit,
  target: { owner: string; repo: string; headSha: string; runId: string },
): Promise<number | null> {
  const checkRuns = await octokit.paginate(octokit.rest.checks.listForRef, {
    owner: target.owner,
    repo: target.repo,
    ref: target.headSha,
    check_name: checkRunName,
    filter: 'all',
    per_page: 100,
  });
  return checkRuns.find((checkRun) => checkRun.external_id === target.runId)?.id ?? null;
}

/**
 * Creates the "Fixwright" check run on the head commit with the first 50 annotations and sends
 * the rest in updates of 50. The check run id and the number of annotations sent are stored
 * after each request, so a retried job continues where the last attempt stopped.
 */
export async function publishCheckRun(
  db: Database,
  octokit: Octokit,
  run: CheckRunTarget,
  findings: readonly ReportedFinding[],
  logger: Logger,
  options: { detailsUrl?: string } = {},
): Promise<PublishedCheckRun> {
  const [owner, repo] = splitRepository(run.repository);
  const conclusion = checkConclusion(worstSeverity(findings));
  const { title, summary } = checkRunOutput(run, findings, conclusion);
  const annotations = annotatedFindings(findings).map(toAnnotation);
  const firstBatch = Math.min(annotations.length, maxAnnotationsPerRequest);

  let checkRunId = run.checkRunId;
  let sent = run.checkRunAnnotations;
  if (checkRunId === null) {
    checkRunId = await findCreatedCheckRun(octokit, {
      owner,
      repo,
      headSha: run.headSha,
      runId: run.id,
    });
    if (checkRunId !== null) {
      // The create request carried the first batch, so only the rest remains.
      sent = firstBatch;
      logger.info({ event: 'report.check_run_adopted', checkRunId }, 'found the check run again');
    } else {
      const { data } = await octokit.rest.checks.create({
        owner,
        repo,
        name: checkRunName,
        head_sha: run.headSha,
        external_id: run.id,
        ...(options.detailsUrl ? { details_url: options.detailsUrl } : {}),
        status: 'completed',
        conclusion,
        completed_at: new Date().toISOString(),
        output: { title, summary, annotations: annotations.slice(0, firstBatch) },
        ...(findings.length > 0 ? { actions: [fixAction] } : {}),
      });
      checkRunId = data.id;
      sent = firstBatch;
      logger.info(
        { event: 'report.check_run_created', checkRunId, conclusion, findings: findings.length },
        'check run created',
      );
    }
    await db
      .update(prRuns)
      .set({ checkRunId, checkRunAnnotations: sent })
      .where(eq(prRuns.id, run.id));
  }

  while (sent < annotations.length) {
    const batch = annotations.slice(sent, sent + maxAnnotationsPerRequest);
    // GitHub appends the annotations of an update to those already on the check run.
    await octokit.rest.checks.update({
      owner,
      repo,
      check_run_id: checkRunId,
      output: { title, summary, annotations: batch },
    });
    sent += batch.length;
    await db.update(prRuns).set({ checkRunAnnotations: sent }).where(eq(prRuns.id, run.id));
  }
  return { checkRunId, conclusion, annotations: sent };
}
