import { and, eq } from 'drizzle-orm';
import { z } from 'zod';
import {
  createPatchRequest,
  listActivePatchRequestIds,
  lockRunPatchRequests,
} from '../autofix/create-patch-request.ts';
import { maxPatchRequestFindings } from '../autofix/patch-request-limit.ts';
import {
  estimateFileCalls,
  loadPreviewPayment,
  pickDefaultSelection,
  type FileCallEstimate,
  type PreviewPayment,
} from '../autofix/preview-budget.ts';
import { describeNoProvider } from '../autofix/no-provider.ts';
import { platformKeySettingNames } from '../autofix/provider-client.ts';
import type { AppContext } from '../context.ts';
import type { Transaction } from '../db/client.ts';
import { installations, prRuns, users, type Provider, type RunStatus } from '../db/schema/index.ts';
import { findInstallationUnavailable } from '../github/installation-unavailable.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { fixPressNoticeQueue, type FixPressNoticeJobData } from '../jobs/fix-press-notice.ts';
import { describePlatformKeyRejection } from '../keys/platform-key-rejections.ts';
import type { FixPressNotice } from '../report/fix-press-notice.ts';
import { checkRunExternalId, fixAction, runIdOfExternalId } from '../report/publish-check-run.ts';
import { pullRequestClosedError } from '../runs/pull-request-closed.ts';
import { listRunFindings } from '../runs/run-findings.ts';
import { formatCount, pickForm } from '../text/plural.ts';
import { describeExhausted, describeMinimumReservation } from '../usage/allowance.ts';
import { githubId } from './github-id.ts';
import { ignoredActionOutcome, quotePayloadValue } from './outcome-values.ts';

export const checkRunPayload = z.object({
  action: z.string(),
  installation: z.object({ id: githubId }).optional(),
  repository: z.object({ id: githubId, full_name: z.string() }),
  check_run: z.object({
    id: githubId,
    head_sha: z.string(),
    external_id: z.string().nullable().optional(),
  }),
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
 * The button cannot choose findings, so the preview gets the dashboard form's default
 * selection: at most `maxPatchRequestFindings` findings, the most severe first, and when the
 * owner's allowance pays, only those that fit what is left. Nothing is queued when none fits
 * or when no provider has a key that previews may use for the owner. The same holds when the
 * platform key that would pay is rejected and the owner has no own key, and for a suspended
 * or deleted installation or a closed pull request. The outcome gives the reason. Unless the
 * installation is suspended or deleted, a fix-press-notice job in the same transaction then
 * shows what the press did on the check run.
 */
export async function handleCheckRunEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: CheckRunPayload,
  context: HandlerContext,
): Promise<string> {
  if (payload.action !== 'requested_action') {
    return ignoredActionOutcome('check_run', payload.action);
  }
  const identifier = payload.requested_action?.identifier;
  if (identifier !== fixAction.identifier) {
    const given = quotePayloadValue(identifier ?? null);
    return `ignored: requested action ${given} is not ${fixAction.identifier}`;
  }

  const checkRunId = payload.check_run.id;
  const run = await tx.query.prRuns.findFirst({
    where: and(eq(prRuns.checkRunId, checkRunId), eq(prRuns.repositoryId, payload.repository.id)),
  });
  const pressed = run ?? (await findRunOfExternalId(tx, payload));
  if (!pressed) return `ignored: check run ${checkRunId} belongs to no Fixwright run`;

  // A check run that the run does not name is still the newest when its external id is that of
  // the run's current analysis.
  const earlier = !run && payload.check_run.external_id !== checkRunExternalId(pressed);
  const press = earlier
    ? await handleEarlierCheckRunPress(tx, pressed, checkRunId)
    : await handleFixPress(tx, boss, pressed, context);
  if (press.notice) {
    // The webhook must not wait for GitHub, so a job shows the outcome on the check run.
    const data: FixPressNoticeJobData = {
      runId: pressed.id,
      checkRunId,
      pressedAt: Date.now(),
      sender: payload.sender?.login ?? null,
      notice: press.notice,
    };
    await boss.send(fixPressNoticeQueue, data, { db: transactionDb(tx) });
  }
  return press.outcome;
}

/**
 * Returns the run that the pressed check run's external id names, or undefined. Each analysis
 * of a run gets a new check run, whose external id starts with the run id (see
 * checkRunExternalId), so the button stays on the check runs of earlier analyses. It also
 * finds the run of the newest check run when a report created it but has not stored its id.
 */
async function findRunOfExternalId(
  tx: Transaction,
  payload: CheckRunPayload,
): Promise<typeof prRuns.$inferSelect | undefined> {
  const runId = runIdOfExternalId(payload.check_run.external_id);
  if (!runId) return undefined;
  return tx.query.prRuns.findFirst({
    where: and(eq(prRuns.id, runId), eq(prRuns.repositoryId, payload.repository.id)),
  });
}

/** Directs a press on the check run of an earlier analysis to the run's newest check run. */
async function handleEarlierCheckRunPress(
  tx: Transaction,
  run: typeof prRuns.$inferSelect,
  checkRunId: number,
): Promise<FixPress> {
  const unavailable = await findInstallationUnavailable(tx, run.installationId);
  if (unavailable) return { outcome: `skipped: ${unavailable.message}` };
  const newest = run.checkRunId === null ? 'is not posted yet' : `is ${run.checkRunId}`;
  return {
    outcome:
      `ignored: check run ${checkRunId} shows an earlier analysis of run ${run.id}, whose ` +
      `newest check run ${newest}`,
    notice: { kind: 'earlier_analysis' },
  };
}

/**
 * Outcome of a press: the text recorded on the delivery, and the notice shown on the check run.
 * A press on a suspended or deleted installation has no notice, because the app cannot write
 * to GitHub there.
 */
interface FixPress {
  outcome: string;
  notice?: FixPressNotice;
}

/**
 * Builds the outcome of a press on the check run of a run that is not completed. A queued or
 * analyzing run that still names the pressed check run is analyzed again for the same commit,
 * as after a push back to it, and its report posts a new check run.
 */
function runNotCompleted(runId: string, status: RunStatus): FixPress {
  const next =
    status === 'queued' || status === 'analyzing'
      ? 'press "Fix with AI" on the new check run that its report posts'
      : 'use the check run of the newest commit';
  const outcome = `no patch request: run ${runId} is ${status}; ${next}`;
  return { outcome, notice: { kind: 'run_not_completed', status } };
}

/** Creates the patch request and queues the preview for a press on the run's check run. */
async function handleFixPress(
  tx: Transaction,
  boss: PgBoss,
  run: typeof prRuns.$inferSelect,
  context: HandlerContext,
): Promise<FixPress> {
  // A press can arrive after a suspend or uninstall, for example when it is redelivered.
  const unavailable = await findInstallationUnavailable(tx, run.installationId);
  if (unavailable) return { outcome: `skipped: ${unavailable.message}` };
  // The button stays on the check run after the pull request is closed. createPatchRequest
  // checks again under a row lock.
  const closed = pullRequestClosedError(run);
  if (closed) {
    return { outcome: `skipped: ${closed.message}`, notice: { kind: 'pull_request_closed' } };
  }

  const installation = await tx.query.installations.findFirst({
    where: eq(installations.id, run.installationId),
  });
  if (!installation?.userId) {
    const outcome =
      `no patch request: installation ${run.installationId} has no owner to pay for fixes; ` +
      'Fixwright records the user who installs the app as its owner, so reinstall the app ' +
      'or have its owner request the fix through the API.';
    return { outcome, notice: { kind: 'no_owner' } };
  }
  if (run.status !== 'completed') return runNotCompleted(run.id, run.status);

  const rows = await listRunFindings(tx, run.id);
  if (rows.length === 0) {
    return {
      outcome: `no patch request: run ${run.id} has no findings`,
      notice: { kind: 'no_findings' },
    };
  }

  // A second press while a preview is still queued or running would pay for the same work twice.
  // Two presses delivered at once would both find none, so the second waits here until the
  // first has committed its patch request.
  await lockRunPatchRequests(tx, run.id);
  const [active] = await listActivePatchRequestIds(tx, { runId: run.id, userId: installation.userId });
  if (active) {
    return {
      outcome: `ignored: patch request ${active} for run ${run.id} is already in progress`,
      notice: { kind: 'in_progress', patchRequestId: active },
    };
  }

  const payment = await loadPreviewPayment({ ...context, db: tx }, installation.userId);
  // Every file of a preview without a provider would fail, and only an own key or the operator
  // can help, so this comes before the allowance too.
  if (payment.kind === 'no_provider') {
    const payer = {
      subject: `user ${installation.userId}, who pays for fixes of this installation,`,
      actor: 'that user',
      possessive: 'their',
      keysPage: 'the keys page',
    };
    const reason = describeNoProvider(payment.unusableOwnKeys, payer);
    return {
      outcome: `no patch request: ${reason} Then press "Fix with AI" again.`,
      notice: { kind: 'no_provider', unusableOwnKeys: payment.unusableOwnKeys },
    };
  }
  // Checked before the allowance, as the API's 503 is, because only the operator or an own key
  // can help, and a preview would fail every file without a request.
  if (payment.kind === 'allowance' && payment.platformKeyRejection) {
    const { provider, status } = payment.platformKeyRejection;
    return {
      outcome: `no patch request: ${describeRejectedPlatformKey(provider, status, installation.userId)}`,
      notice: { kind: 'platform_key_rejected', provider, status },
    };
  }
  const { findingIds: picked, overLimit } = pickDefaultSelection(payment, rows);
  const files = new Set(rows.map((row) => row.path)).size;
  if (picked.size === 0 && payment.kind === 'allowance') {
    // The outcome names the login, which `fixwright users plan --login` takes to change the plan.
    const [owner] = await tx
      .select({ login: users.login })
      .from(users)
      .where(eq(users.id, installation.userId));
    const ownerName = owner?.login ?? installation.userId;
    return {
      outcome: `no patch request: ${describeNothingFits(payment, rows, ownerName)}`,
      notice: { kind: 'no_file_fits', files },
    };
  }
  const selected = rows.filter((row) => picked.has(row.id));

  const result = await createPatchRequest(tx, boss, {
    runId: run.id,
    userId: installation.userId,
    findingIds: selected.map((row) => row.id),
  });
  if (!result.ok && result.reason === 'installation_unavailable') {
    return { outcome: `skipped: ${result.error.message}` };
  }
  if (!result.ok && result.reason === 'pull_request_closed') {
    return {
      outcome: `skipped: ${result.error.message}`,
      notice: { kind: 'pull_request_closed' },
    };
  }
  // A push that superseded the run after the check above.
  if (!result.ok && result.reason === 'run_not_completed') return runNotCompleted(run.id, result.status);
  if (!result.ok) {
    const ids = result.unknownFindingIds;
    const outcome =
      `no patch request: ${pickForm(ids.length, 'finding', 'findings')} ${ids.join(', ')} ` +
      `${pickForm(ids.length, 'is', 'are')} gone`;
    return { outcome, notice: { kind: 'findings_gone' } };
  }
  const selectedFiles = new Set(selected.map((row) => row.path)).size;
  const leftOutFiles = files - selectedFiles;
  const leftOutFindings = rows.length - selected.length;
  const notice: FixPressNotice = {
    kind: 'queued',
    patchRequestId: result.id,
    files: selectedFiles,
    leftOutFiles,
    leftOutFindings,
    ...(overLimit > 0 ? { overLimitFindings: overLimit } : {}),
  };
  const queued =
    `patch request ${result.id} queued for run ${run.id} with ${formatCount(selected.length, 'finding')}, ` +
    `paid by user ${installation.userId}`;
  if (leftOutFindings === 0) return { outcome: queued, notice };
  // Only the allowance and the limit leave findings out, and only the allowance leaves files out.
  const overAllowance = leftOutFindings - overLimit;
  const reasons: string[] = [];
  if (overLimit > 0) {
    reasons.push(
      `${overLimit} because a preview takes at most ${maxPatchRequestFindings} findings, ` +
        'picked most severe first',
    );
  }
  if (overAllowance > 0 && payment.kind === 'allowance') {
    const subject = overLimit > 0 ? `${overAllowance} because their` : 'because their';
    reasons.push(
      `${subject} minimum reservations do not fit the ${payment.allowance.remaining} tokens ` +
        "left of that user's allowance",
    );
  }
  const outcome =
    `${queued}; ${leftOutFindings} of ${formatCount(rows.length, 'finding')} left out ` +
    `(${leftOutFiles} of ${formatCount(files, 'file')} entirely), ${reasons.join(', and ')}`;
  return { outcome, notice };
}

/**
 * Explains that the platform key that would pay first is rejected and the paying user has no
 * usable own key, with the setting that the operator replaces.
 */
function describeRejectedPlatformKey(provider: Provider, status: number | null, userId: string): string {
  return (
    `${describePlatformKeyRejection(provider, status)}, and user ${userId}, who pays for fixes ` +
    `of this installation, has no usable key of their own. Replace ${platformKeySettingNames[provider]}, ` +
    'or have that user save a Groq or Gemini key on the keys page, then press "Fix with AI" again.'
  );
}

/**
 * Explains why not even one finding of the run fits the owner's allowance, with what the owner
 * can do. It names the smallest minimum reservation of a call that fixes one finding alone.
 */
function describeNothingFits(
  payment: Extract<PreviewPayment, { kind: 'allowance' }>,
  rows: Parameters<typeof estimateFileCalls>[0],
  ownerLogin: string,
): string {
  const singles = rows.map((row) => ({ row, call: estimateFileCalls([row])[0]! }));
  const cheapest = singles.reduce((least, single) => (single.call.tokens < least.call.tokens ? single : least));
  const { row, call } = cheapest;
  const bound = call.sizeKnown ? 'about' : 'at least';
  const subject =
    rows.length === 1
      ? `the model call for the run's one finding (${row.ruleId} on ${row.path}:${row.startLine})`
      : `the model call for the cheapest of the run's ${formatCount(rows.length, 'finding')} alone ` +
        `(${row.ruleId} on ${row.path}:${row.startLine})`;
  return (
    `no finding fits the allowance of user ${ownerLogin}, who pays for fixes of this installation. ` +
    describeExhausted(payment.allowance, describeMinimumReservation(subject, call.tokens, bound))
  );
}
