import type { Octokit } from '@octokit/rest';
import { and, eq, isNull } from 'drizzle-orm';
import { compareBySeverity, worstSeverity } from '../analysis/analyze.ts';
import { mayHaveWritten } from '../github/request-errors.ts';
import { parseGitHubResponse, readCheckedPages } from '../github/github-response.ts';
import { splitRepository } from '../github/repository-name.ts';
import type { Database, Transaction } from '../db/client.ts';
import { prRuns } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { annotationLevel, checkConclusion, type CheckConclusion } from './check-conclusion.ts';
import { checkRunSchemas } from './check-run-response.ts';
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
  /** The run's current analyze job, which names its analysis in the check run's external id. */
  analyzeJobId: string | null;
  checkRunId: number | null;
  checkRunAnnotations: number;
}

/**
 * Builds the external id of the check run of the run's current analysis: the run id, then the
 * analyze job id. A run analyzed again gets a new check run, because GitHub keeps every
 * annotation a check run was sent. Runs completed before analyze job ids were stored have
 * none, and their check runs have the run id alone.
 */
export function checkRunExternalId(run: { id: string; analyzeJobId: string | null }): string {
  return run.analyzeJobId === null ? run.id : `${run.id}:${run.analyzeJobId}`;
}

/** Builds the URL of a check run in the Checks tab of the run's pull request on GitHub. */
export function checkRunUrl(
  githubUrl: string,
  run: { repository: string; prNumber: number },
  checkRunId: number,
): string {
  return `${githubUrl}/${run.repository}/pull/${run.prNumber}/checks?check_run_id=${checkRunId}`;
}

/** Run ids are UUIDs, so the external id of a Fixwright check run starts with one. */
const externalIdPattern = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?::|$)/;

/**
 * Returns the run id that a check run's external id starts with, or null for an external id
 * that checkRunExternalId did not build.
 */
export function runIdOfExternalId(externalId: string | null | undefined): string | null {
  return externalIdPattern.exec(externalId ?? '')?.[1] ?? null;
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

/** Parts of a check run's stored output that a report update must keep. */
interface StoredOutput {
  annotations: number;
  /** The `text` of the output, which contains the notice of a "Fix with AI" press, or null. */
  text: string | null;
}

/** A check run of this app, with the annotation count and text GitHub stores for it. */
interface ExistingCheckRun extends StoredOutput {
  id: number;
}

/**
 * Finds the check run that an earlier attempt created for this run but did not store, by its
 * external id, so a retried job never creates a second one. Only check runs of this app, whose
 * `app.id` is `appId`, count: another app installed on the repository may create a check run
 * with the same name and external id, and the report must not adopt and update it. An invalid
 * page of the listing raises UnexpectedGitHubAnswerError.
 */
async function findCreatedCheckRun(
  octokit: Octokit,
  target: { owner: string; repo: string; headSha: string; externalId: string; appId: number },
): Promise<ExistingCheckRun | null> {
  const pages = readCheckedPages(
    octokit,
    'GET /repos/{owner}/{repo}/commits/{ref}/check-runs',
    {
      owner: target.owner,
      repo: target.repo,
      ref: target.headSha,
      check_name: checkRunName,
      app_id: target.appId,
      filter: 'all',
      per_page: 100,
    },
    checkRunSchemas.listed,
    { itemsField: 'check_runs' },
  );
  for await (const { items } of pages) {
    // Filtered here too, so that the check does not depend on GitHub applying `app_id`.
    const found = items.find(
      (checkRun) => checkRun.app?.id === target.appId && checkRun.external_id === target.externalId,
    );
    if (found) {
      return { id: found.id, annotations: found.output.annotations_count, text: found.output.text };
    }
  }
  return null;
}

/**
 * Reads how many annotations GitHub stores for the check run, and its text. GitHub appends the
 * annotations of every update, so the count shows whether an update whose response was lost
 * took effect. NOTE: that GitHub counts an update's annotations before it responds is assumed,
 * not verified.
 */
async function readStoredOutput(
  octokit: Octokit,
  target: { owner: string; repo: string; checkRunId: number },
): Promise<StoredOutput> {
  const { output } = parseGitHubResponse(
    checkRunSchemas.storedOutput,
    'GET',
    await octokit.rest.checks.get({
      owner: target.owner,
      repo: target.repo,
      check_run_id: target.checkRunId,
    }),
  );
  return { annotations: output.annotations_count, text: output.text };
}

/**
 * Creates the "Fixwright" check run on the head commit with the first 50 annotations and sends
 * the rest in updates of 50. The check run id and the number of annotations sent are stored
 * after each request, so a retried job continues where the last attempt stopped. `appId` is
 * this GitHub App's id, whose check runs alone an attempt may take over.
 * `onCheckRunStored` runs in the transaction that stores the check run's id on the run, and
 * only when the run is still in the analysis that the check run shows.
 */
export async function publishCheckRun(
  db: Database,
  octokit: Octokit,
  run: CheckRunTarget,
  findings: readonly ReportedFinding[],
  logger: Logger,
  options: {
    appId: number;
    detailsUrl?: string;
    onCheckRunStored?: (tx: Transaction) => Promise<void>;
  },
): Promise<PublishedCheckRun> {
  const [owner, repo] = splitRepository(run.repository);
  const conclusion = checkConclusion(worstSeverity(findings));
  const { title, summary } = checkRunOutput(run, findings, conclusion);
  const annotations = annotatedFindings(findings).map(toAnnotation);
  const firstBatch = Math.min(annotations.length, maxAnnotationsPerRequest);

  const externalId = checkRunExternalId(run);
  // The check run and its count are stored only while the run is still in this analysis. A run
  // queued again meanwhile gets a new check run when its new analysis completes.
  const ofAnalysis = and(
    eq(prRuns.id, run.id),
    run.analyzeJobId === null ? isNull(prRuns.analyzeJobId) : eq(prRuns.analyzeJobId, run.analyzeJobId),
  );
  const target = { owner, repo, headSha: run.headSha, externalId, appId: options.appId };
  let checkRunId = run.checkRunId;
  let sent = run.checkRunAnnotations;
  // The check run's text as GitHub stores it, which contains the notice of a "Fix with AI" press
  // made before this attempt. An update without text may clear it, so each update sends it.
  // The report's session lock keeps new notices out until the attempt ends.
  let text: string | null = null;
  if (checkRunId === null) {
    let existing = await findCreatedCheckRun(octokit, target);
    if (existing !== null) {
      logger.info(
        { event: 'report.check_run_adopted', checkRunId: existing.id },
        'found the check run again',
      );
    } else {
      try {
        const response = await octokit.rest.checks.create({
          owner,
          repo,
          name: checkRunName,
          head_sha: run.headSha,
          external_id: externalId,
          ...(options.detailsUrl ? { details_url: options.detailsUrl } : {}),
          status: 'completed',
          conclusion,
          completed_at: new Date().toISOString(),
          output: { title, summary, annotations: annotations.slice(0, firstBatch) },
          ...(findings.length > 0 ? { actions: [fixAction] } : {}),
          // Sent once: a server error may come after GitHub created the check run.
          request: { retries: 0 },
        });
        const created = parseGitHubResponse(checkRunSchemas.written, 'POST', response);
        existing = { id: created.id, annotations: firstBatch, text: null };
        logger.info(
          {
            event: 'report.check_run_created',
            checkRunId: created.id,
            conclusion,
            findings: findings.length,
          },
          'check run created',
        );
      } catch (error) {
        // A server error or an invalid response may come after GitHub created the check run,
        // so the listing decides. Creating it again would leave two check runs on the commit.
        if (!mayHaveWritten(error)) throw error;
        existing = await findCreatedCheckRun(octokit, target);
        if (existing === null) throw error;
        logger.info(
          { event: 'report.check_run_adopted', checkRunId: existing.id },
          'found the check run created before a server error or an invalid response',
        );
      }
    }
    checkRunId = existing.id;
    sent = existing.annotations;
    text = existing.text;
    const storedId = checkRunId;
    await db.transaction(async (tx) => {
      const stored = await tx
        .update(prRuns)
        .set({ checkRunId: storedId, checkRunAnnotations: sent })
        .where(ofAnalysis)
        .returning({ id: prRuns.id });
      if (stored.length > 0) await options.onCheckRunStored?.(tx);
    });
  } else if (sent < annotations.length) {
    // An earlier attempt may have sent a batch and stopped before storing its count. The
    // stored count only grows after GitHub confirmed a batch, so a lower count is a stale read.
    const stored = await readStoredOutput(octokit, { owner, repo, checkRunId });
    sent = Math.max(sent, stored.annotations);
    text = stored.text;
    await db.update(prRuns).set({ checkRunAnnotations: sent }).where(ofAnalysis);
  }

  while (sent < annotations.length) {
    const batch = annotations.slice(sent, sent + maxAnnotationsPerRequest);
    try {
      // GitHub appends the annotations of an update to those already on the check run, so the
      // update is sent once, and a server error or an invalid response is decided by the count
      // GitHub stores.
      const response = await octokit.rest.checks.update({
        owner,
        repo,
        check_run_id: checkRunId,
        output: { title, summary, ...(text === null ? {} : { text }), annotations: batch },
        request: { retries: 0 },
      });
      parseGitHubResponse(checkRunSchemas.written, 'PATCH', response);
      sent += batch.length;
    } catch (error) {
      if (!mayHaveWritten(error)) throw error;
      const stored = await readStoredOutput(octokit, { owner, repo, checkRunId });
      if (stored.annotations <= sent) throw error;
      sent = stored.annotations;
    }
    await db.update(prRuns).set({ checkRunAnnotations: sent }).where(ofAnalysis);
  }
  return { checkRunId, conclusion, annotations: sent };
}
