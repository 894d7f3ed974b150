import { sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import { prRuns, pullRequestCloses } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { applyPullRequestEvent, closedAtOrAfter } from '../events/pull-request.ts';
import {
  baseChangeEvent,
  eventPayload,
  headChangeEvent,
} from '../events/pull-request-from-github.ts';
import {
  asInstallationUnavailable,
  findInstallationUnavailable,
  recordInstallationUnavailable,
} from '../github/installation-unavailable.ts';
import {
  fetchPullRequestState,
  type GitHubPullRequest,
} from '../github/pull-request-state.ts';
import { asGitHubRateLimit } from '../github/rate-limit.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { lockPullRequest } from '../runs/pull-request-lock.ts';
import type { PgBoss as Boss } from './boss.ts';
import {
  confirmPullRequestDelaySeconds,
  confirmPullRequestJobData,
  confirmPullRequestQueue,
  pullRequestCheckKey,
  queuePullRequestConfirmation,
  type ConfirmPullRequestJobData,
} from './confirm-pull-request-queue.ts';
import { deferCheck, findLaterCheck, findRunningCheck } from './keyed-checks.ts';
import { rateLimitFields } from './rate-limit-wait.ts';

/**
 * Result of a check: why it applied no event, or the outcomes of the events it applied.
 * `corrected` means the stored state matches GitHub's afterwards, and `differs` means a handler
 * ignored an event, for example one older than a stored close because GitHub's API lags.
 */
type ConfirmOutcome =
  | { status: 'skipped'; reason: string }
  | { status: 'unchanged' }
  | { status: 'corrected' | 'differs'; outcomes: string[] };

/**
 * Sets the pull request's closed mark, head commit and base branch to what GitHub reports now,
 * because two events of the same second cannot be ordered by their times, and because an
 * event can be skipped or lost. A difference is applied as the matching event would apply it.
 * That is `reopened` when GitHub reports the pull request open while it is marked closed, and
 * `closed` for the reverse. It is `synchronize` when GitHub's head commit has no run, or only a
 * superseded one (see headChangeEvent). It is `edited` with `changes.base` when the run of
 * GitHub's head commit has another base branch. Each event has GitHub's
 * `updated_at` (or `closed_at` for a close), so an event that arrives later with a later time
 * still wins. An event applied between the read and the write queues another check instead.
 * A check that finds another check of the pull request running reads nothing. It queues a
 * check to run after that one, or leaves it to a check queued already, and ends.
 *
 * A check of an installation marked suspended or deleted ends without reading GitHub. Missing
 * GitHub App credentials end the job with a warning, and so do a 404 for the pull request and an
 * installation that GitHub reports suspended or uninstalled. A failed or invalid
 * response, including a rate limit, and a failed database write fail the job, so pg-boss retries
 * it with backoff. The state stays as the events left it meanwhile.
 */
export async function handleConfirmPullRequestJob(
  context: AppContext,
  job: PgBoss.JobWithMetadata<ConfirmPullRequestJobData>,
): Promise<void> {
  const data = confirmPullRequestJobData.parse(job.data);
  const logger = context.logger.child({
    jobId: job.id,
    installationId: data.installationId,
    repository: data.repository,
    prNumber: data.prNumber,
    queue: confirmPullRequestQueue,
  });
  // A `suspend` or `deleted` event cancels the waiting checks, but a mark that a rejected token
  // request set cancels nothing. GitHub would reject this check's token request too.
  const unavailable = await findInstallationUnavailable(context.db, data.installationId);
  if (unavailable) {
    logger.info(
      { event: 'job.confirm_pull_request.skipped', reason: unavailable.reason, error: unavailable.message },
      'pull request check skipped without reading GitHub: the installation is marked ' +
        `${unavailable.reason}, so the pull request keeps the state of its events`,
    );
    return;
  }
  const key = pullRequestCheckKey(data.repositoryId, data.prNumber);
  const running = await findRunningCheck(context.db, confirmPullRequestQueue, key, job.id);
  if (running) {
    await deferCheck(context.db, logger, {
      event: 'job.confirm_pull_request.deferred',
      subject: 'pull request',
      queue: confirmPullRequestQueue,
      key,
      delaySeconds: confirmPullRequestDelaySeconds,
      runningJobId: running,
      queueNext: (tx, startAfter) => queuePullRequestConfirmation(tx, context.boss, data, startAfter),
    });
    return;
  }
  let outcome: ConfirmOutcome;
  let githubState: string;
  try {
    const github = requireGitHubApp(context);
    const storedBeforeRead = await readEventState(context.db, data);
    const state = await fetchPullRequestState(github, data);
    if (state.kind === 'not_found') {
      logger.warn(
        { event: 'job.confirm_pull_request.not_found' },
        'pull request check found no such pull request on GitHub, so its state stays as its ' +
          'events left it',
      );
      return;
    }
    if (state.kind === 'other') {
      logger.warn(
        { event: 'job.confirm_pull_request.other_pull_request', reason: state.message },
        'pull request check read another pull request on GitHub, so its state stays as its ' +
          'events left it; a retry would read the same one',
      );
      return;
    }
    githubState = state.pullRequest.state;
    outcome = await context.db.transaction((tx) =>
      applyPullRequestState(tx, context.boss, job.id, data, {
        pullRequest: state.pullRequest,
        storedBeforeRead,
      }),
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.warn(
        { event: 'job.confirm_pull_request.not_configured', reason: error.message },
        'pull request check skipped because GitHub App credentials are not configured, so the ' +
          'pull request keeps the state of its events',
      );
      return;
    }
    const unavailable = asInstallationUnavailable(error);
    if (unavailable) {
      const recorded = await recordInstallationUnavailable(context.db, unavailable);
      logger.warn(
        {
          event: 'job.confirm_pull_request.stopped',
          reason: recorded.reason,
          error: recorded.message,
        },
        'pull request check stopped: the installation is unavailable',
      );
      return;
    }
    const finalAttempt = job.retryCount >= job.retryLimit;
    const rateLimit = asGitHubRateLimit(error);
    logger.error(
      {
        event: 'job.confirm_pull_request.failed',
        err: toSafeError(error),
        attempt: job.retryCount,
        finalAttempt,
        ...(rateLimit ? rateLimitFields(rateLimit) : {}),
      },
      finalAttempt
        ? 'pull request check failed for the last time, so the pull request keeps the state of ' +
            'its events until its next event'
        : 'pull request check failed, and it is retried with backoff',
    );
    throw error;
  }

  logger.info(
    { event: 'job.confirm_pull_request.completed', github: githubState, ...outcome },
    outcome.status === 'corrected'
      ? 'pull request state corrected to what GitHub reports'
      : 'pull request check finished',
  );
}

/**
 * Returns the columns that pull request events write, for all runs of the pull request and its
 * close recorded without a run, as one text. It includes whether each run is superseded, because
 * that is all a skipped `synchronize` event of a suspended installation changes. Analysis does
 * not change it, so a difference between two reads means that an event, or another check, was
 * applied in between.
 */
async function readEventState(
  db: Database | Transaction,
  data: ConfirmPullRequestJobData,
): Promise<string> {
  const [row] = await db.execute<{ state: string | null }>(sql`
    SELECT concat_ws(';',
      (SELECT string_agg(concat_ws('|', ${prRuns.id}, ${prRuns.prClosedAt}, ${prRuns.prReopenedAt},
          ${prRuns.prUpdatedAt}, ${prRuns.baseRef}, ${prRuns.status} = 'superseded'), ','
          ORDER BY ${prRuns.id})
        FROM ${prRuns}
        WHERE ${prRuns.repositoryId} = ${data.repositoryId} AND ${prRuns.prNumber} = ${data.prNumber}),
      (SELECT ${pullRequestCloses.closedAt}::text FROM ${pullRequestCloses}
        WHERE ${pullRequestCloses.repositoryId} = ${data.repositoryId}
          AND ${pullRequestCloses.prNumber} = ${data.prNumber})
    ) AS state`);
  return row?.state ?? '';
}

/**
 * Applies the events that bring the stored state to GitHub's, unless another check is queued
 * or an event changed the stored state after `storedBeforeRead` was read. In that case GitHub's
 * response may be older than the event, so a new check is queued to read GitHub again.
 */
async function applyPullRequestState(
  tx: Transaction,
  boss: Boss,
  jobId: string,
  data: ConfirmPullRequestJobData,
  github: { pullRequest: GitHubPullRequest; storedBeforeRead: string },
): Promise<ConfirmOutcome> {
  const { pullRequest } = github;
  // Events of the pull request take the same lock, so one that committed after GitHub was read
  // is seen below, and one that comes later waits for this commit.
  await lockPullRequest(tx, data.repositoryId, data.prNumber);
  // A check of this pull request that is queued, or that started during this one, leads to a
  // read of GitHub after this job's, because checks of a pull request run one at a time. That
  // read decides. An event that tied with the state after this job read GitHub has queued
  // such a check.
  const key = pullRequestCheckKey(data.repositoryId, data.prNumber);
  const later = await findLaterCheck(tx, confirmPullRequestQueue, key, jobId);
  if (later) return { status: 'skipped', reason: later };
  // An event of the same second as GitHub's `updated_at`, such as a close right after a
  // comment, would otherwise be undone by the older response, because times tie.
  if ((await readEventState(tx, data)) !== github.storedBeforeRead) {
    const queued = await queuePullRequestConfirmation(tx, boss, data);
    return {
      status: 'skipped',
      reason: `an event changed the pull request after GitHub was read, so check ${queued} reads it again`,
    };
  }

  const outcomes: string[] = [];
  const closed = pullRequest.state === 'closed';
  if (closed !== (await isMarkedClosed(tx, data))) {
    const action = closed ? 'closed' : 'reopened';
    const event = eventPayload(action, data, pullRequest);
    outcomes.push(`${action}: ${await applyPullRequestEvent(tx, boss, event, [])}`);
  }
  if (!closed) {
    // First the head, because the run that its event creates has GitHub's base branch already.
    const headChange = await headChangeEvent(tx, data, pullRequest);
    if (headChange) {
      outcomes.push(`synchronize: ${await applyPullRequestEvent(tx, boss, headChange, [])}`);
    }
    const baseChange = await baseChangeEvent(tx, data, pullRequest);
    if (baseChange) {
      outcomes.push(`edited: ${await applyPullRequestEvent(tx, boss, baseChange, [])}`);
    }
  }
  if (outcomes.length === 0) return { status: 'unchanged' };
  const matches =
    closed === (await isMarkedClosed(tx, data)) &&
    (closed ||
      ((await headChangeEvent(tx, data, pullRequest)) === null &&
        (await baseChangeEvent(tx, data, pullRequest)) === null));
  return { status: matches ? 'corrected' : 'differs', outcomes };
}

/** Returns whether the pull request is marked closed, on its runs or as a close without run. */
async function isMarkedClosed(tx: Transaction, data: ConfirmPullRequestJobData): Promise<boolean> {
  const closedAt = await closedAtOrAfter(tx, data.repositoryId, data.prNumber, new Date(0));
  return closedAt !== null;
}
