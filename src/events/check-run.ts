import { and, eq } from 'drizzle-orm';
import { z } from 'zod';
import {
  createPatchRequest,
  listActivePatchRequestIds,
  lockRunPatchRequests,
} from '../autofix/create-patch-request.ts';
import {
  estimateFileCalls,
  loadPreviewPayment,
  pickDefaultFiles,
  type FileCallEstimate,
  type PreviewPayment,
} from '../autofix/preview-budget.ts';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import { installations, prRuns } from '../db/schema/index.ts';
import { findInstallationUnavailable } from '../github/installation-unavailable.ts';
import type { PgBoss } from '../jobs/boss.ts';
import { fixAction } from '../report/publish-check-run.ts';
import { pullRequestClosedError } from '../runs/pull-request-closed.ts';
import { listRunFindings } from '../runs/run-findings.ts';
import { formatCount, pickForm } from '../text/plural.ts';
import { describeExhausted } from '../usage/allowance.ts';
import { githubId } from './github-id.ts';

export const checkRunPayload = z.object({
  action: z.string(),
  installation: z.object({ id: githubId }).optional(),
  repository: z.object({ id: githubId, full_name: z.string() }),
  check_run: z.object({ id: githubId, head_sha: z.string() }),
  requested_action: z.object({ identifier: z.string() }).optional(),
  sender: z.object({ login: z.string() }).optional(),
});
export type CheckRunPayload = z.infer<typeof checkRunPayload>;

/** Settings, keyring and logger that the handler needs to find what pays for a preview. */
type HandlerContext = Pick<AppContext, 'config' | 'keyring' | 'logger'>;

/**
 * Handles the "Fix with AI" button of a Fixwright check run: creates a patch request for the
 * run's findings and queues its preview. The installation's owner pays, not the user who
 * pressed the button, because automatic work is charged to the user who installed the app.
 * The button cannot choose files, so the preview gets the dashboard form's default selection:
 * when the owner's allowance pays, only the files whose estimates fit what is left, the most
 * severe first. When no file fits, or for a suspended or deleted installation or a closed
 * pull request, nothing is queued, and the outcome gives the reason.
 */
export async function handleCheckRunEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: CheckRunPayload,
  context: HandlerContext,
): Promise<string> {
  if (payload.action !== 'requested_action') {
    return `ignored: check_run action ${payload.action}`;
  }
  const identifier = payload.requested_action?.identifier;
  if (identifier !== fixAction.identifier) {
    const given = JSON.stringify(identifier ?? null);
    return `ignored: requested action ${given} is not ${fixAction.identifier}`;
  }

  const checkRunId = payload.check_run.id;
  const run = await tx.query.prRuns.findFirst({
    where: and(eq(prRuns.checkRunId, checkRunId), eq(prRuns.repositoryId, payload.repository.id)),
  });
  if (!run) return `ignored: check run ${checkRunId} belongs to no Fixwright run`;

  // A press can arrive after a suspend or uninstall, for example when it is redelivered.
  const unavailable = await findInstallationUnavailable(tx, run.installationId);
  if (unavailable) return `skipped: ${unavailable.message}`;
  // The button stays on the check run after the pull request is closed. createPatchRequest
  // checks again under a row lock.
  const closed = pullRequestClosedError(run);
  if (closed) return `skipped: ${closed.message}`;

  const installation = await tx.query.installations.findFirst({
    where: eq(installations.id, run.installationId),
  });
  if (!installation?.userId) {
    return (
      `no patch request: installation ${run.installationId} has no owner to pay for fixes; ` +
      'Fixwright records the user who installs the app as its owner, so reinstall the app ' +
      'or have its owner request the fix through the API.'
    );
  }
  if (run.status !== 'completed') {
    return (
      `no patch request: run ${run.id} is ${run.status}; ` +
      'use the check run of the newest commit'
    );
  }

  const rows = await listRunFindings(tx, run.id);
  if (rows.length === 0) return `no patch request: run ${run.id} has no findings`;

  // A second press while a preview is still queued or running would pay for the same work twice.
  // Two presses delivered at once would both find none, so the second waits here until the
  // first has committed its patch request.
  await lockRunPatchRequests(tx, run.id);
  const [active] = await listActivePatchRequestIds(tx, { runId: run.id, userId: installation.userId });
  if (active) return `ignored: patch request ${active} for run ${run.id} is already in progress`;

  const payment = await loadPreviewPayment({ ...context, db: tx }, installation.userId);
  const calls = estimateFileCalls(rows);
  const paths = pickDefaultFiles(payment, calls);
  if (paths.size === 0 && payment.kind === 'allowance') {
    return `no patch request: ${describeNoFileFits(payment, calls, installation.userId)}`;
  }
  const selected = rows.filter((row) => paths.has(row.path));

  const result = await createPatchRequest(tx, boss, {
    runId: run.id,
    userId: installation.userId,
    findingIds: selected.map((row) => row.id),
  });
  if (
    !result.ok &&
    (result.reason === 'installation_unavailable' || result.reason === 'pull_request_closed')
  ) {
    return `skipped: ${result.error.message}`;
  }
  if (!result.ok) {
    const ids = result.unknownFindingIds;
    return (
      `no patch request: ${pickForm(ids.length, 'finding', 'findings')} ${ids.join(', ')} ` +
      `${pickForm(ids.length, 'is', 'are')} gone`
    );
  }
  const queued =
    `patch request ${result.id} queued for run ${run.id} with ${selected.length} finding(s), ` +
    `paid by user ${installation.userId}`;
  if (paths.size === calls.length || payment.kind !== 'allowance') return queued;
  const leftOut = calls.length - paths.size;
  return (
    `${queued}; ${leftOut} of ${formatCount(calls.length, 'file')} left out, because their ` +
    `estimates do not fit the ${payment.allowance.remaining} tokens left of that user's allowance`
  );
}

/** Explains why no file of the run fits the owner's allowance, with what the owner can do. */
function describeNoFileFits(
  payment: Extract<PreviewPayment, { kind: 'allowance' }>,
  calls: readonly FileCallEstimate[],
  userId: string,
): string {
  const smallest = calls.reduce((least, call) => (call.tokens < least.tokens ? call : least));
  const estimate = smallest.sizeKnown ? 'about' : 'at least';
  const subject = `the smallest of the run's ${formatCount(calls.length, 'file')}`;
  return (
    `no file fits the allowance of user ${userId}, who pays for fixes of this installation. ` +
    describeExhausted(payment.allowance, smallest.tokens, estimate, subject)
  );
}
