import { sql } from 'drizzle-orm';
import type PgBoss from 'pg-boss';
import type { Database, Transaction } from '../db/client.ts';
import type { Logger } from '../logger.ts';
import { transactionDb } from './boss.ts';
import { lockIsFree } from './job-liveness.ts';

/**
 * pg-boss policy of the check queues, whose jobs have a singleton key per installation or pull
 * request. `short` keeps at most one queued (`created`) job per key, so a burst of events
 * queues one check, and an event during a running check queues one more. It does not limit
 * running jobs: the handlers run one check per key at a time with `findRunningCheck`.
 *
 * The queues used `stately`, which also keeps one running job per key, but pg-boss 10.4.2
 * enforces that in its fetch. The fetch sets the next due job active, and the unique index
 * on (name, state, singleton key) rejects the update when a job of that key is active
 * already. The whole fetch then fails, pg-boss's `Manager.fetch` drops the error without a
 * log, and the rejected job stays first in fetch order. So until the running check ended, the
 * queue's workers fetched no job of any key. `short` has no index on running jobs, so no fetch
 * fails. Its index covers queued jobs only.
 */
export const checkQueuePolicy: PgBoss.QueuePolicy = 'short';

/**
 * Retries of the check queues. pg-boss 10.4 retries a failed job after
 * retryDelay * 2^n / 2 * (1 + random) seconds, so the 10 retries span about 4 to 8.5 hours,
 * longer than GitHub's primary rate limit window of one hour.
 */
export const checkQueueOptions = {
  retryLimit: 10,
  retryDelay: 15,
  retryBackoff: true,
  expireInSeconds: 5 * 60,
} satisfies Omit<PgBoss.Queue, 'name' | 'policy'>;

/**
 * Returns the id of a job of `queue` with singleton key `key`, other than `jobId`, that is
 * active now, or null. A check that gets an id must not read GitHub: two checks of one key
 * could otherwise write their reads in the reverse order. pg-boss's fetch commits a job's
 * `active` state before its handler calls this. So when several workers run two checks of one
 * key at once, the check that calls this later finds the other, and at most one reads GitHub.
 */
export async function findRunningCheck(
  db: Database,
  queue: string,
  key: string,
  jobId: string,
): Promise<string | null> {
  const [running] = await db.execute<{ id: string }>(sql`
    SELECT id FROM pgboss.job
    WHERE name = ${queue} AND singleton_key = ${key} AND state = 'active' AND id <> ${jobId}
    ORDER BY started_on, id
    LIMIT 1`);
  return running?.id ?? null;
}

/**
 * Ends a check that found check `runningJobId` of its key running, without reading GitHub.
 * `queueNext` queues a check of the key, unless a check of the key is queued already. While a
 * worker still runs the other check, the new check waits for it. That worker moves its start
 * to `delaySeconds` after the other check ends (see `startCheckQueuedBehind`). At the latest it
 * starts `delaySeconds` after the other check's expiry, by which pg-boss has failed that check.
 * Otherwise it starts after `delaySeconds`, as for an event. So a slow check leaves one waiting
 * check of its key, not a new one every `delaySeconds`. `subject` is what the key names, such
 * as `installation`.
 */
export async function deferCheck(
  db: Database,
  logger: Logger,
  deferral: {
    event: string;
    subject: string;
    queue: string;
    key: string;
    delaySeconds: number;
    runningJobId: string;
    queueNext: (tx: Transaction, startAfter?: Date) => Promise<string | null>;
  },
): Promise<void> {
  const { event, subject, runningJobId } = deferral;
  const { next, latestStart } = await db.transaction(async (tx) => {
    await lockCheckKey(tx, deferral.queue, deferral.key);
    const latestStart = await findLatestStart(tx, runningJobId, deferral.delaySeconds);
    return { next: await deferral.queueNext(tx, latestStart ?? undefined), latestStart };
  });
  const running = `${subject} check deferred: another check of this ${subject} is running`;
  let message = `${running}, and a check queued already runs after it`;
  if (next !== null && latestStart !== null) {
    message = `${running}, so a new check is queued to start ${deferral.delaySeconds} s after it ends`;
  } else if (next !== null) {
    message = `${running}, so a new check is queued to run after it`;
  }
  logger.info(
    {
      event,
      runningJobId,
      nextJobId: next,
      ...(next !== null && latestStart !== null ? { latestStart: latestStart.toISOString() } : {}),
    },
    message,
  );
}

/**
 * Makes the queued check of key `key` start `delaySeconds` from now, unless it starts sooner,
 * after check `endedJobId` of the key ended or was failed. While a worker still runs another
 * check of the key, that check's end moves it instead. Call it only once no worker holds the
 * liveness lock of `endedJobId`, because until then `deferCheck` queues checks that wait for
 * it. Returns the id of the check moved, or null.
 */
export async function startCheckQueuedBehind(
  db: Database,
  logger: Logger,
  check: { queue: string; key: string; endedJobId: string; delaySeconds: number },
): Promise<string | null> {
  const { queue, key, endedJobId, delaySeconds } = check;
  const moved = await db.transaction(async (tx) => {
    await lockCheckKey(tx, queue, key);
    const active = await tx.execute<{ id: string }>(sql`
      SELECT id FROM pgboss.job
      WHERE name = ${queue} AND singleton_key = ${key} AND state = 'active' AND id <> ${endedJobId}`);
    for (const other of active) {
      if (!(await lockIsFree(tx, other.id))) return null;
    }
    const [row] = await tx.execute<{ id: string }>(sql`
      UPDATE pgboss.job SET start_after = now() + make_interval(secs => ${delaySeconds})
      WHERE name = ${queue} AND singleton_key = ${key} AND state = 'created'
        AND start_after > now() + make_interval(secs => ${delaySeconds})
      RETURNING id`);
    return row?.id ?? null;
  });
  if (moved) {
    logger.info(
      { event: 'jobs.deferred_check_moved', queue, jobId: moved, endedJobId, delaySeconds },
      `deferred check starts in ${delaySeconds} s, because the checks it waited for ended`,
    );
  }
  return moved;
}

/**
 * Takes the transaction-level lock of a check queue's key. `deferCheck` and
 * `startCheckQueuedBehind` take it, so a check queued to wait for a running one is either
 * moved by the start that follows that check's end, or finds that the check has ended.
 */
async function lockCheckKey(tx: Transaction, queue: string, key: string): Promise<void> {
  await tx.execute(
    sql`SELECT pg_advisory_xact_lock(hashtextextended(${`fixwright:check:${queue}:${key}`}, 0))`,
  );
}

/**
 * Returns when a check queued to wait for check `runningJobId` starts at the latest:
 * `delaySeconds` after that check's expiry, or from now when it has expired. Returns null when
 * that check is no longer active or no worker holds its liveness lock, because then no worker
 * moves the waiting check when it ends.
 */
async function findLatestStart(
  tx: Transaction,
  runningJobId: string,
  delaySeconds: number,
): Promise<Date | null> {
  const [running] = await tx.execute<{ start_ms: number }>(sql`
    SELECT (extract(epoch FROM GREATEST(started_on + expire_in, now())) * 1000
      + ${delaySeconds * 1000})::float8 AS start_ms
    FROM pgboss.job WHERE id = ${runningJobId} AND state = 'active'`);
  if (!running) return null;
  if (await lockIsFree(tx, runningJobId)) return null;
  return new Date(running.start_ms);
}

/**
 * Returns why a check that read GitHub leaves its write to another check of the same key, or
 * null when no other check is queued or running. A queued check reads GitHub later. A check
 * that started during this one finds this one running and queues a check in its place, unless
 * this one has ended by then and it reads GitHub itself.
 */
export async function findLaterCheck(
  tx: Transaction,
  queue: string,
  key: string,
  jobId: string,
): Promise<string | null> {
  // pg-boss's job_state enum sorts `created` before `active`.
  const [later] = await tx.execute<{ id: string; state: string }>(sql`
    SELECT id, state::text AS state FROM pgboss.job
    WHERE name = ${queue} AND singleton_key = ${key}
      AND state IN ('created', 'active') AND id <> ${jobId}
    ORDER BY state
    LIMIT 1`);
  if (!later) return null;
  if (later.state === 'created') return `check ${later.id} is queued and reads GitHub later`;
  return `check ${later.id} started during this one, so it or the check that it queues reads GitHub later`;
}

/**
 * Cancels the jobs of `queue` for installation `installationId` that wait to start or to be
 * retried, in the caller's transaction, and returns how many. Running jobs are left to their
 * handlers. The queue's job data must have `installationId`.
 */
export async function cancelWaitingChecksOfInstallation(
  tx: Transaction,
  boss: PgBoss,
  queue: string,
  installationId: number,
): Promise<number> {
  // pg-boss's job_state enum sorts `created` and `retry` before `active`. The job data stores
  // the installation id as a JSON number, which ->> returns as text.
  const waiting = await tx.execute<{ id: string }>(sql`
    SELECT id FROM pgboss.job
    WHERE name = ${queue} AND state < 'active'
      AND data->>'installationId' = ${String(installationId)}`);
  const ids = waiting.map((row) => row.id);
  if (ids.length > 0) await boss.cancel(queue, ids, { db: transactionDb(tx) });
  return ids.length;
}

/**
 * Creates a check queue with `checkQueuePolicy`, or moves an existing `stately` queue to it.
 * pg-boss stores the policy on the queue when it creates it, and createQueue leaves an
 * existing queue as it is. Each job row carries the policy of its queue at the time it was
 * sent, too, so the unfinished jobs are moved over as well.
 */
export async function createCheckQueue(
  boss: PgBoss,
  name: string,
  options: Omit<PgBoss.Queue, 'name' | 'policy'>,
  logger?: Logger,
): Promise<void> {
  const queue = { name, ...options, policy: checkQueuePolicy };
  await boss.createQueue(name, queue);
  const stored = await boss.getQueue(name);
  if (stored && stored.policy !== checkQueuePolicy) {
    await boss.updateQueue(name, queue);
  }
  const moved = await moveUnfinishedJobs(boss, name);
  if (stored?.policy !== checkQueuePolicy || moved > 0) {
    logger?.info(
      { event: 'jobs.queue_policy_changed', queue: name, from: stored?.policy, to: checkQueuePolicy, jobs: moved },
      'check queue moved to its new pg-boss policy',
    );
  }
}

/**
 * Sets `checkQueuePolicy` on the queue's unfinished `stately` jobs, and returns how many.
 * A queued `stately` job stays as it is when its key has a queued job of the new policy,
 * because the unique index of queued jobs would reject the update. Every other unfinished
 * job of its key is moved, so its fetch meets no `stately` job of its key and cannot fail.
 */
async function moveUnfinishedJobs(boss: PgBoss, name: string): Promise<number> {
  const update = `
    UPDATE pgboss.job j SET policy = $2
    WHERE j.name = $1 AND j.policy = 'stately' AND j.state < 'completed'
      AND NOT (j.state = 'created' AND EXISTS (
        SELECT 1 FROM pgboss.job queued
        WHERE queued.name = j.name AND queued.policy = $2 AND queued.state = 'created'
          AND COALESCE(queued.singleton_key, '') = COALESCE(j.singleton_key, '')))
    RETURNING j.id`;
  // A queued job of the same key committed after the statement's snapshot makes the update
  // fail with a unique violation (23505). The next try's snapshot includes that job.
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows } = await boss.getDb().executeSql(update, [name, checkQueuePolicy]);
      return rows.length;
    } catch (error) {
      if ((error as { code?: unknown }).code !== '23505' || attempt >= 3) throw error;
    }
  }
}
