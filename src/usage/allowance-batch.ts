import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { executePrepared } from '../db/prepared.ts';
import type { KeySource, Plan, Provider } from '../db/schema/index.ts';

export type AllowanceOperation =
  | {
      kind: 'reserve';
      /** Tokens requested, granted in full or not at all unless `minimum` is set. */
      tokens: number;
      /** Minimum tokens accepted. The largest amount from it to `tokens` that fits is granted. */
      minimum?: number;
      key: string;
      ttl: number;
    }
  | {
      kind: 'settle';
      reservation: string | null;
      key: string;
      provider: Provider;
      model: string;
      source: KeySource;
      prompt: number;
      completion: number;
      total: number;
      /** The provider's own counts when prompt, completion and total are an estimate. */
      reported: { prompt: number; completion: number; total: number } | null;
      patchRequest: string | null;
      path: string | null;
    }
  | { kind: 'release'; reservation: string };

/** The outcome of one operation in `apply_allowance_batch`, with the user's counters after it. */
export interface OperationResult {
  /** Reserve: the tokens fit. Settle: a ledger row was written. Release: always true. */
  ok: boolean;
  reservationId: string | null;
  /** Reserve: the tokens granted, 0 when they did not fit. Otherwise 0. */
  granted: number;
  charged: number;
  released: number;
  plan: Plan;
  limit: number;
  used: number;
  reserved: number;
}

interface Waiter {
  /** The operation as JSON, made when it was queued so a value JSON cannot hold fails alone. */
  operation: string;
  resolve: (result: OperationResult) => void;
  reject: (error: unknown) => void;
}

interface UserQueue {
  waiting: Waiter[];
  /** A statement of this user is in flight; operations arriving now wait for the next. */
  sending: boolean;
}

/** Operations per statement; a longer queue is sent in several. */
const maxBatch = 64;
const deadlockAttempts = 3;

const queues = new WeakMap<Database, Map<string, UserQueue>>();
const counters = { statements: 0, operations: 0 };

/** Statements sent and operations applied by this process since it started. */
export function allowanceBatchCounters(): { statements: number; operations: number } {
  return { ...counters };
}

/**
 * Applies one allowance operation on the user's row. Operations of one user in this process go
 * through one queue: the first is sent at once, and those that arrive while its statement is in
 * flight are sent together in the next one. One caller alone waits for no one; many callers on
 * one user share row locks and commits, which is what limits a single row's throughput.
 */
export function applyAllowanceOperation(
  db: Database,
  userId: string,
  operation: AllowanceOperation,
): Promise<OperationResult> {
  let json: string;
  try {
    json = JSON.stringify(operation);
  } catch (error) {
    return Promise.reject(error);
  }
  let byUser = queues.get(db);
  if (!byUser) {
    byUser = new Map();
    queues.set(db, byUser);
  }
  let queue = byUser.get(userId);
  if (!queue) {
    queue = { waiting: [], sending: false };
    byUser.set(userId, queue);
  }
  const promise = new Promise<OperationResult>((resolve, reject) => {
    queue.waiting.push({ operation: json, resolve, reject });
  });
  pump(db, userId, queue, byUser);
  return promise;
}

function pump(db: Database, userId: string, queue: UserQueue, byUser: Map<string, UserQueue>) {
  if (queue.sending) return;
  if (queue.waiting.length === 0) {
    byUser.delete(userId);
    return;
  }
  queue.sending = true;
  const batch = queue.waiting.splice(0, maxBatch);
  void runBatch(db, userId, batch).then(() => {
    // Callers whose operations just finished often send their next one within a few promise
    // turns. Waiting one turn of the event loop lets those join the next batch.
    setImmediate(() => {
      queue.sending = false;
      pump(db, userId, queue, byUser);
    });
  });
}

/** Runs a batch and settles every waiter's promise. Errors go to the waiters, so it does not throw. */
async function runBatch(db: Database, userId: string, batch: Waiter[]): Promise<void> {
  try {
    const results = await applyWithRetry(db, userId, batch.map((waiter) => waiter.operation));
    batch.forEach((waiter, index) => waiter.resolve(results[index]!));
  } catch (error) {
    // A statement that failed with an SQL error was rolled back as a whole. Sending each
    // operation alone keeps one bad operation from failing the others. Without an SQL error
    // (a lost connection, say) the outcome is unknown, so nothing is sent again.
    if (batch.length > 1 && isStatementError(error)) {
      for (const waiter of batch) await runBatch(db, userId, [waiter]);
      return;
    }
    for (const waiter of batch) waiter.reject(error);
  }
}

async function applyWithRetry(
  db: Database,
  userId: string,
  operations: string[],
): Promise<OperationResult[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await applyBatch(db, userId, operations);
    } catch (error) {
      // A deadlock with a writer outside this module rolls the batch back; sending it again
      // is safe.
      if (postgresCode(error) === '40P01' && attempt < deadlockAttempts) continue;
      throw error;
    }
  }
}

type ResultRow = {
  out_index: number;
  out_ok: boolean;
  out_reservation: string | null;
  out_charged: string | number;
  out_released: string | number;
  out_plan: Plan;
  out_limit: string | number;
  out_used: string | number;
  out_reserved: string | number;
  out_granted: string | number;
};

async function applyBatch(
  db: Database,
  userId: string,
  operations: string[],
): Promise<OperationResult[]> {
  counters.statements++;
  counters.operations += operations.length;
  const rows = await executePrepared<ResultRow>(
    db,
    sql`SELECT * FROM apply_allowance_batch(${userId}::uuid, ${`[${operations.join(',')}]`}::jsonb)`,
  );
  const results: OperationResult[] = [];
  for (const row of rows) {
    results[row.out_index] = {
      ok: row.out_ok,
      reservationId: row.out_reservation,
      granted: Number(row.out_granted),
      charged: Number(row.out_charged),
      released: Number(row.out_released),
      plan: row.out_plan,
      limit: Number(row.out_limit),
      used: Number(row.out_used),
      reserved: Number(row.out_reserved),
    };
  }
  if (rows.length !== operations.length) {
    throw new Error(
      `apply_allowance_batch returned ${rows.length} results for ${operations.length} operations.`,
    );
  }
  return results;
}

/** Tells whether PostgreSQL returned an error, which means the statement was rolled back. */
function isStatementError(error: unknown): boolean {
  const code = postgresCode(error);
  return code !== undefined && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith('08');
}

export function postgresCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: string } }).cause;
  return cause?.code ?? (error as { code?: string }).code;
}
