import { and, desc, eq, gt, gte, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Transaction } from '../db/client.ts';
import { maxInteger } from '../db/schema/columns.ts';
import { prRuns, pullRequestCloses } from '../db/schema/index.ts';
import {
  findInstallationUnavailable,
  type InstallationUnavailableError,
} from '../github/installation-unavailable.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { analyzeQueue, type AnalyzeJobData } from '../jobs/analyze.ts';
import { queueClosedApplyChecks } from '../jobs/closed-apply-check.ts';
import {
  cancelApplyJobsOfRuns,
  cancelFixPressNoticesOfRuns,
  cancelPatchRequestsOfRuns,
} from '../runs/cancel-run-work.ts';
import { lockPullRequest } from '../runs/pull-request-lock.ts';
import { queuedAgainValues } from '../runs/queued-again.ts';
import {
  describeOtherInstallationCommit,
  supersedeOlderRuns,
  supersedeRunsOfOtherCommits,
} from '../runs/supersede-older-runs.ts';
import { boundEventTimes } from './event-times.ts';
import { githubId } from './github-id.ts';
import { handleBaseChange } from './pull-request-base-change.ts';
import { isSameSecond, queueConfirmation, type ConfirmContext } from './pull-request-ties.ts';
import { queueUnrecordedInstallationCheck, recordEventInstallation } from './unrecorded-installation.ts';
import { branchName, githubLogin, repositoryFullName } from './github-names.ts';
import { ignoredActionOutcome } from './outcome-values.ts';

const isoDateTime = z.iso.datetime({ offset: true });
/**
 * Date.parse also reads text that is not ISO 8601, such as RFC 2822 dates, and years that
 * PostgreSQL rejects: the year 0 and six-digit signed years (`+275760-09-13T00:00:00Z`).
 */
const earliestTimestamp = Date.UTC(1970, 0, 1);
const latestTimestamp = Date.UTC(10000, 0, 1);

function isStorableTimestamp(value: string): boolean {
  if (!isoDateTime.safeParse(value).success) return false;
  const time = Date.parse(value);
  return time >= earliestTimestamp && time < latestTimestamp;
}

const isoTimestamp = z.string().refine(isStorableTimestamp, {
  message: 'must be an ISO 8601 date and time from 1970 to 9999 such as 2019-05-15T15:20:33Z',
});

/**
 * `changes.base` of an `edited` event: the base branch and its tip before the change. GitHub
 * sends both, but only `ref.from` is read, for messages, so an event without either is still
 * handled as a base change.
 */
const baseChange = z.object({
  ref: z.object({ from: branchName }).optional(),
  sha: z.object({ from: z.string() }).optional(),
});

export const pullRequestPayload = z.object({
  action: z.string(),
  changes: z.object({ base: baseChange.optional() }).optional(),
  number: z.number().int().positive().max(maxInteger),
  installation: z.object({ id: githubId }).optional(),
  repository: z.object({
    id: githubId,
    full_name: repositoryFullName,
    owner: z.object({ id: githubId, login: githubLogin, type: z.string().optional() }),
    /** GitHub always sends it. A payload without it is taken as not archived. */
    archived: z.boolean().optional(),
  }),
  pull_request: z.object({
    title: z.string(),
    state: z.string().optional(),
    updated_at: isoTimestamp,
    closed_at: isoTimestamp.nullable().optional(),
    head: z.object({
      sha: z.string().regex(/^[0-9a-f]{40}$/),
      ref: branchName,
      repo: z.object({ full_name: repositoryFullName }).nullable(),
    }),
    base: z.object({ sha: z.string().regex(/^[0-9a-f]{40}$/), ref: branchName }),
  }),
});
export type PullRequestPayload = z.infer<typeof pullRequestPayload>;

const analyzedActions = new Set(['opened', 'synchronize', 'reopened']);

/**
 * Creates one run per (repository, pull request, head sha) and queues its analysis in the
 * same transaction, so a run never exists without its job. Runs of older commits are
 * superseded and their queued previews cancelled. `closed` marks the pull request's runs closed
 * and cancels the queued work instead, and `reopened` clears that mark on all of its runs.
 * `edited` with `changes.base` analyzes the head commit again against the new base (see
 * handleBaseChange), and other edits are ignored. Analysis for a suspended or deleted
 * installation, or for an archived repository, is skipped, and the outcome gives the reason. A
 * suspended installation's event still supersedes the runs of older commits (see
 * skipUnavailable).
 *
 * GitHub's times have whole seconds. An event that changes the closed mark or the base branch
 * although the stored state has a time in the same second is applied, and it also queues a check
 * with GitHub (src/jobs/confirm-pull-request.ts) when `confirm` has GitHub App credentials.
 * An event that names an installation without a row records it and queues a check of the
 * installation with GitHub (see queueUnrecordedInstallationCheck).
 */
export async function handlePullRequestEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
  confirm?: ConfirmContext,
): Promise<string> {
  const ties: string[] = [];
  const effects: EventEffects = { recordedInstallation: null };
  const outcome = await applyPullRequestEvent(tx, boss, payload, ties, effects);
  if (ties.length > 0 && confirm) await queueConfirmation(tx, boss, payload, ties, confirm);
  if (effects.recordedInstallation === null) return outcome;
  const check = await queueUnrecordedInstallationCheck(tx, boss, effects.recordedInstallation, confirm);
  return `${outcome}; ${check}`;
}

/** Side effects of applyPullRequestEvent that its outcome does not carry. */
export interface EventEffects {
  /** The installation whose row the event created (see recordEventInstallation), or null. */
  recordedInstallation: number | null;
}

/**
 * Does the database work of handlePullRequestEvent and returns the outcome. It appends to
 * `ties` a description of each change of the closed mark or base branch that this event made
 * although the stored state has a time in the same second, so the two events' order is unknown.
 * It sets `effects.recordedInstallation` when it recorded the event's installation. A time of
 * the event later than now plus `maxEventClockSkewMs` is replaced by that bound, and the
 * outcome names the replaced time (see boundEventTimes).
 */
export async function applyPullRequestEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
  ties: string[],
  effects: EventEffects = { recordedInstallation: null },
): Promise<string> {
  const bounded = boundEventTimes(payload, new Date());
  const outcome = await applyBoundedEvent(tx, boss, bounded.payload, ties, effects);
  return bounded.note === null ? outcome : `${outcome}; ${bounded.note}`;
}

/** Does the work of applyPullRequestEvent for a payload whose times are bounded. */
async function applyBoundedEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
  ties: string[],
  effects: EventEffects,
): Promise<string> {
  if (payload.action === 'closed') return handleClosed(tx, boss, payload, ties);
  const baseChanged = payload.action === 'edited' && payload.changes?.base !== undefined;
  if (!analyzedActions.has(payload.action) && !baseChanged) {
    return ignoredActionOutcome('pull_request', payload.action);
  }
  const installationId = payload.installation?.id;
  if (!installationId) return 'ignored: the payload names no app installation';

  const { repository, pull_request: pullRequest } = payload;
  if (await recordEventInstallation(tx, installationId, repository.owner)) {
    effects.recordedInstallation = installationId;
  }
  // The insert keeps the row of a suspended or deleted installation as it is, and a late
  // event for such an installation must not start a run.
  const unavailable = await findInstallationUnavailable(tx, installationId);
  await lockPullRequest(tx, repository.id, payload.number);
  // The mark is cleared even while the installation is suspended or deleted, so the runs accept
  // fixes once it is active again.
  const reopenedAt = new Date(pullRequest.updated_at);
  const reopenedRuns =
    payload.action === 'reopened'
      ? await markRunsOpen(tx, repository.id, payload.number, reopenedAt, ties)
      : 0;
  if (unavailable) return skipUnavailable(tx, boss, payload, unavailable, baseChanged);
  if (repository.archived) {
    return (
      `skipped: repository ${repository.full_name} is archived, so GitHub would reject the ` +
      'check run and summary comment of a run. Unarchive it and push a commit to analyze the ' +
      'pull request.'
    );
  }

  const updatedAt = new Date(pullRequest.updated_at);
  const target = `${repository.full_name}#${payload.number}`;
  // An event older than a close that is still marked comes from before that close, so it
  // must neither start an analysis nor create a run that accepts fixes.
  const closedAt = await closedAtOrAfter(tx, repository.id, payload.number, updatedAt);
  if (closedAt) {
    const note = `${target} was closed at ${closedAt.toISOString()}, after this event`;
    return payload.action === 'reopened'
      ? `pull request reopened: marked ${reopenedRuns} run(s) open; ignored: ${note}`
      : `ignored: ${note}`;
  }
  if (baseChanged) {
    const outcome = await handleBaseChange(tx, boss, payload, updatedAt, ties);
    if (outcome !== null) return outcome;
  }
  const [newer] = await tx
    .select({ id: prRuns.id, headSha: prRuns.headSha, installationId: prRuns.installationId })
    .from(prRuns)
    .where(
      and(
        eq(prRuns.repositoryId, repository.id),
        eq(prRuns.prNumber, payload.number),
        gt(prRuns.prUpdatedAt, updatedAt),
      ),
    )
    .orderBy(desc(prRuns.prUpdatedAt))
    .limit(1);

  // GitHub may deliver events out of order: an event older than a known run arrives superseded.
  // A newer run of another installation is named by its installation, as supersedeOlderRuns does.
  let lateNote: string | null = null;
  if (newer && newer.installationId === installationId) {
    lateNote = `Superseded on arrival: run ${newer.id} is for a newer commit, ${newer.headSha}.`;
  } else if (newer) {
    lateNote = `Superseded on arrival: ${await describeOtherInstallationCommit(tx, newer.installationId, newer.headSha)}`;
  }
  const [run] = await tx
    .insert(prRuns)
    .values({
      installationId,
      repositoryId: repository.id,
      repository: repository.full_name,
      prNumber: payload.number,
      prTitle: pullRequest.title.slice(0, 1000),
      baseSha: pullRequest.base.sha,
      baseRef: pullRequest.base.ref,
      headSha: pullRequest.head.sha,
      headRef: pullRequest.head.ref,
      // GitHub sends head.repo null once the fork is deleted. '' keeps apply from pushing to
      // the base repository's branch that has the fork branch's name.
      headRepository: pullRequest.head.repo?.full_name ?? '',
      prUpdatedAt: updatedAt,
      // markRunsOpen ran before this run existed. handleClosed reads the reopen time to find a
      // close of the same second, also on the first run of a pull request.
      prReopenedAt: payload.action === 'reopened' ? reopenedAt : null,
      status: lateNote ? 'superseded' : 'queued',
      error: lateNote,
    })
    .onConflictDoNothing()
    .returning({ id: prRuns.id });

  const existing = run
    ? undefined
    : await tx.query.prRuns.findFirst({
        where: and(
          eq(prRuns.repositoryId, repository.id),
          eq(prRuns.prNumber, payload.number),
          eq(prRuns.headSha, pullRequest.head.sha),
        ),
      });
  if (lateNote) {
    return run ? `run ${run.id} superseded on arrival by run ${newer!.id}` : `ignored: ${lateNote}`;
  }
  if (!run) {
    // A run of this commit that was cancelled (closed, then reopened) or superseded (a force
    // push back to it) is the newest again, so it runs again. So does one that failed, for
    // example before the app's credentials were set. Other existing runs stay as they are.
    const rerun = ['cancelled', 'superseded', 'failed'];
    if (!existing || !rerun.includes(existing.status)) {
      if (payload.action === 'reopened') {
        return (
          `pull request reopened: marked ${reopenedRuns} run(s) open; the run for ${target} ` +
          `at ${pullRequest.head.sha} stays ${existing?.status ?? 'as it is'}`
        );
      }
      return `ignored: a run for ${target} at ${pullRequest.head.sha} exists`;
    }
    await tx
      .update(prRuns)
      .set(queuedAgainValues(pullRequest, updatedAt))
      .where(eq(prRuns.id, existing!.id));
  }
  const runId = run?.id ?? existing!.id;

  const superseded = await supersedeOlderRuns(tx, boss, {
    repositoryId: repository.id,
    prNumber: payload.number,
    runId,
    // A run queued again keeps the installation that created it.
    installationId: existing?.installationId ?? installationId,
    headSha: pullRequest.head.sha,
    updatedAt,
  });
  const data: AnalyzeJobData = { runId };
  const analyzeJobId = await boss.send(analyzeQueue, data, { db: transactionDb(tx) });
  await tx.update(prRuns).set({ analyzeJobId }).where(eq(prRuns.id, runId));

  const verb = run ? 'queued' : 'queued again';
  return superseded.length > 0
    ? `run ${runId} ${verb}; superseded ${superseded.length} older run(s)`
    : `run ${runId} ${verb}`;
}

/**
 * Returns the `skipped:` outcome of an event that would analyze a pull request of a suspended
 * or uninstalled installation. The head commit of a suspended installation's pull request is
 * still recorded: the runs of other commits from older events are superseded, so no preview is
 * paid for on a commit that can no longer be applied. With GitHub App credentials, the
 * installation's `unsuspend` queues a check of the pull request with GitHub, which creates the
 * run of its newest commit. An uninstalled installation records nothing, because it rejects
 * every preview and apply already.
 */
async function skipUnavailable(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
  unavailable: InstallationUnavailableError,
  baseChanged: boolean,
): Promise<string> {
  const skipped = `skipped: ${unavailable.message}`;
  if (baseChanged || unavailable.reason !== 'suspended') return skipped;
  const { repository, pull_request: pullRequest } = payload;
  const updatedAt = new Date(pullRequest.updated_at);
  // An event older than a stored close changes nothing, as for an active installation.
  if (await closedAtOrAfter(tx, repository.id, payload.number, updatedAt)) return skipped;
  const headSha = pullRequest.head.sha;
  const superseded = await supersedeRunsOfOtherCommits(
    tx,
    boss,
    { repositoryId: repository.id, prNumber: payload.number, headSha, updatedAt },
    `Superseded: the pull request has the newer commit ${headSha}, which was not analyzed ` +
      `because ${unavailable.message} Fixwright analyzes that commit once the installation is ` +
      'unsuspended.',
  );
  return superseded.length > 0
    ? `${skipped} Superseded ${superseded.length} run(s) of older commits.`
    : skipped;
}

/**
 * Returns the latest close of the pull request that is not before `at`, or null. Closes are
 * marked on its runs, or recorded in pull_request_closes when it had no run.
 */
export async function closedAtOrAfter(
  tx: Transaction,
  repositoryId: number,
  prNumber: number,
  at: Date,
): Promise<Date | null> {
  const [row] = await tx
    .select({ closedAt: prRuns.prClosedAt })
    .from(prRuns)
    .where(
      and(
        eq(prRuns.repositoryId, repositoryId),
        eq(prRuns.prNumber, prNumber),
        gte(prRuns.prClosedAt, at),
      ),
    )
    .orderBy(desc(prRuns.prClosedAt))
    .limit(1);
  if (row?.closedAt) return row.closedAt;
  const [recorded] = await tx
    .select({ closedAt: pullRequestCloses.closedAt })
    .from(pullRequestCloses)
    .where(
      and(
        eq(pullRequestCloses.repositoryId, repositoryId),
        eq(pullRequestCloses.prNumber, prNumber),
        gte(pullRequestCloses.closedAt, at),
      ),
    );
  return recorded?.closedAt ?? null;
}

/**
 * Records the reopen time on every run of the pull request and clears the closed mark of those
 * closed at or before it, and the close recorded while it had no run. Returns how many runs had
 * their mark cleared. A mark from a later close stays, so a `reopened` event that arrives after
 * a newer `closed` one reopens nothing. A cleared close in the same second as the reopen is
 * appended to `ties`.
 */
async function markRunsOpen(
  tx: Transaction,
  repositoryId: number,
  prNumber: number,
  reopenedAt: Date,
  ties: string[],
): Promise<number> {
  const ofPullRequest = and(eq(prRuns.repositoryId, repositoryId), eq(prRuns.prNumber, prNumber));
  const reopened = await tx
    .select({ id: prRuns.id, closedAt: prRuns.prClosedAt })
    .from(prRuns)
    .where(and(ofPullRequest, lte(prRuns.prClosedAt, reopenedAt)));
  const at = reopenedAt.toISOString();
  await tx
    .update(prRuns)
    .set({
      prReopenedAt: sql`greatest(${prRuns.prReopenedAt}, ${at}::timestamptz)`,
      prClosedAt: sql`CASE WHEN ${prRuns.prClosedAt} <= ${at}::timestamptz THEN NULL ELSE ${prRuns.prClosedAt} END`,
    })
    .where(ofPullRequest);
  const recordedCloses = await tx
    .delete(pullRequestCloses)
    .where(
      and(
        eq(pullRequestCloses.repositoryId, repositoryId),
        eq(pullRequestCloses.prNumber, prNumber),
        lte(pullRequestCloses.closedAt, reopenedAt),
      ),
    )
    .returning({ closedAt: pullRequestCloses.closedAt });
  const clearedCloses = [...reopened, ...recordedCloses].map((row) => row.closedAt!);
  if (clearedCloses.some((closedAt) => isSameSecond(closedAt, reopenedAt))) {
    ties.push(`the reopen at ${at} cleared a close of the same second`);
  }
  return reopened.length;
}

/**
 * Marks every run of the pull request closed, then cancels its queued analyses and unfinished
 * patch requests, and queues a check of each apply left unconfirmed (see
 * `handleClosedApplyCheckJob`). A pull request without runs gets its close recorded in
 * pull_request_closes.
 *
 * The mark comes first because its UPDATE waits for any transaction that locked one of these
 * runs FOR SHARE to create a patch request or regenerate a file (findPullRequestClosed). The
 * cancellation that follows reads after that transaction has committed, so it cancels the new
 * work too. Work that starts after the mark commits reads the mark and is rejected.
 *
 * GitHub may deliver events out of order. A `closed` event older than a `reopened` one already
 * applied, or than an event that started a run, is ignored: the pull request is open again.
 */
async function handleClosed(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
  ties: string[],
): Promise<string> {
  const { repository, pull_request: pullRequest } = payload;
  const target = `${repository.full_name}#${payload.number}`;
  await lockPullRequest(tx, repository.id, payload.number);
  const ofPullRequest = and(
    eq(prRuns.repositoryId, repository.id),
    eq(prRuns.prNumber, payload.number),
  );
  const closedAt = new Date(pullRequest.closed_at ?? pullRequest.updated_at).toISOString();
  const [later] = await tx
    .select({ id: prRuns.id })
    .from(prRuns)
    .where(
      and(
        ofPullRequest,
        or(
          gt(prRuns.prReopenedAt, sql`${closedAt}::timestamptz`),
          gt(prRuns.prUpdatedAt, sql`${closedAt}::timestamptz`),
        ),
      ),
    )
    .limit(1);
  if (later) return `ignored: ${target} was reopened or updated after this close, at ${closedAt}`;
  // A reopen in the same second that left the pull request open may have come after this close.
  const [tiedReopen] = await tx
    .select({ id: prRuns.id })
    .from(prRuns)
    .where(
      and(
        ofPullRequest,
        sql`date_trunc('second', ${prRuns.prReopenedAt})
          = date_trunc('second', ${closedAt}::timestamptz)`,
        or(isNull(prRuns.prClosedAt), lt(prRuns.prClosedAt, prRuns.prReopenedAt)),
      ),
    )
    .limit(1);
  if (tiedReopen) ties.push(`the close at ${closedAt} ended a reopen of the same second`);
  const allRuns = await tx
    .update(prRuns)
    // The latest close wins. Two closes have a reopen between them, which may arrive last
    // and must then not clear the later close.
    .set({ prClosedAt: sql`greatest(${prRuns.prClosedAt}, ${closedAt}::timestamptz)` })
    .where(ofPullRequest)
    .returning({ id: prRuns.id });
  if (allRuns.length === 0) {
    // No run carries the mark, so an `opened` event delivered after this close would start an
    // analysis of the closed pull request.
    await tx
      .insert(pullRequestCloses)
      .values({ repositoryId: repository.id, prNumber: payload.number, closedAt: new Date(closedAt) })
      .onConflictDoUpdate({
        target: [pullRequestCloses.repositoryId, pullRequestCloses.prNumber],
        set: { closedAt: sql`greatest(${pullRequestCloses.closedAt}, excluded.closed_at)` },
      });
  }

  const cancelledRuns = await tx
    .update(prRuns)
    .set({ status: 'cancelled', error: 'Cancelled: the pull request was closed before analysis.' })
    .where(and(ofPullRequest, inArray(prRuns.status, ['queued', 'analyzing'])))
    .returning({ id: prRuns.id, analyzeJobId: prRuns.analyzeJobId });
  const jobIds = cancelledRuns.flatMap((row) => (row.analyzeJobId ? [row.analyzeJobId] : []));
  if (jobIds.length > 0) {
    await boss.cancel(analyzeQueue, jobIds, { db: transactionDb(tx) });
  }

  // A notice of an earlier press could name a patch request cancelled below.
  await cancelFixPressNoticesOfRuns(
    tx,
    boss,
    allRuns.map((row) => row.id),
  );
  const cancelledRequests = await cancelPatchRequestsOfRuns(
    tx,
    boss,
    allRuns.map((row) => row.id),
    `Cancelled because pull request ${target} was closed. Reopen it on GitHub, then request ` +
      'the fix again.',
  );
  // A waiting apply would otherwise commit once the pull request is reopened, which a user
  // who closed it does not expect.
  const cancelledApplies = await cancelApplyJobsOfRuns(
    tx,
    boss,
    allRuns.map((row) => row.id),
    `The apply was cancelled because pull request ${target} was closed. Reopen it on GitHub, ` +
      'then apply again.',
  );
  // Applies are rejected from now on, so a check settles each apply left unconfirmed.
  const checks = await queueClosedApplyChecks(
    tx,
    boss,
    allRuns.map((row) => row.id),
  );
  const work = [
    `${cancelledRuns.length} run(s)`,
    `${cancelledRequests.length} patch request(s)`,
    ...(cancelledApplies > 0 ? [`${cancelledApplies} apply job(s)`] : []),
  ];
  return (
    `pull request closed: marked ${allRuns.length} run(s) closed, cancelled ` +
    `${work.slice(0, -1).join(', ')} and ${work.at(-1)}` +
    (checks > 0 ? `, queued ${checks} check(s) of unconfirmed applies` : '')
  );
}
