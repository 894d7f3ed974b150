import { sql, type SQL } from 'drizzle-orm';
import type { Database, Transaction } from '../db/client.ts';
import {
  applyAllowanceOperation,
  postgresCode,
  type AllowanceOperation,
} from './allowance-batch.ts';
import type { KeySource, Plan, Provider } from '../db/schema/index.ts';

export interface AllowanceState {
  plan: Plan;
  /** Tokens allowed per period; -1 means unlimited. */
  limit: number;
  used: number;
  reserved: number;
  /** Tokens still free to reserve; Infinity when unlimited. */
  remaining: number;
}

export type AllowanceCheck =
  | ({ allowed: true } & AllowanceState)
  | ({ allowed: false; reason: string } & AllowanceState);

export type Reservation =
  | {
      ok: true;
      reservationId: string;
      /**
       * Tokens reserved: the requested `tokens`, or fewer but at least `minimumTokens` when only
       * those fit.
       */
      tokens: number;
    }
  | ({ ok: false; reason: string } & AllowanceState);

/** Token counts of one model call. */
export type TokenUsage = { promptTokens: number; completionTokens: number; totalTokens: number };

export interface SettleInput {
  userId: string;
  /** The reservation to release; null for calls that reserved nothing (own key). */
  reservationId: string | null;
  idempotencyKey: string;
  provider: Provider;
  model: string;
  keySource: KeySource;
  usage: TokenUsage;
  /**
   * The provider's own counts when `usage` is an estimate that replaced them, because they were
   * missing or too low. The ledger row keeps them next to the charged counts.
   */
  reportedUsage?: TokenUsage | null;
  patchRequestId?: string | null;
  path?: string | null;
}

export interface Settlement {
  /** False when a ledger row with this idempotency key already existed. */
  recorded: boolean;
  charged: number;
  tokensUsed: number;
}

type UserRow = {
  plan: Plan;
  token_limit: string | number;
  tokens_used: string | number;
  tokens_reserved: string | number;
};

function toState(counters: { plan: Plan; limit: number; used: number; reserved: number }) {
  const { plan, limit, used, reserved } = counters;
  return {
    plan,
    limit,
    used,
    reserved,
    remaining: limit < 0 ? Number.POSITIVE_INFINITY : Math.max(limit - used - reserved, 0),
  } satisfies AllowanceState;
}

/** Advice by plan once its allowance is used up. Enterprise has no larger plan to move to. */
const exhaustedAdvice: Record<Plan, string> = {
  free: 'Upgrade to the Pro plan, wait for the next period, or add your own Groq or Gemini key.',
  pro: 'Wait for the next period, switch to a larger plan, or add your own Groq or Gemini key.',
  enterprise: 'Wait for the next period or add your own Groq or Gemini key.',
};

/** `about` for an estimate, `at least` for a lower bound that leaves out a file's content. */
export type EstimateBound = 'about' | 'at least';

/**
 * Builds the sentence shown to a user whose allowance cannot cover a call. `need` is the clause
 * that names what the call or calls need, such as `describeReservation` or
 * `describeMinimumReservation` returns.
 */
export function describeExhausted(state: AllowanceState, need: string): string {
  const planName = state.plan[0]!.toUpperCase() + state.plan.slice(1);
  const advice = exhaustedAdvice[state.plan];
  return (
    `Not enough token allowance left: the ${planName} plan allows ${state.limit} tokens per period, ` +
    `${state.used} are used and ${state.reserved} are reserved by calls in progress, ` +
    `so ${state.remaining} remain but ${need}. ${advice}`
  );
}

/**
 * Names the tokens that a call reserves, which are its prompt estimate plus its output cap.
 * `parts` gives the two, when the caller knows them.
 */
export function describeReservation(
  subject: string,
  tokens: number,
  parts?: { promptTokens: number; outputCap: number },
): string {
  const sum = parts ? ` (prompt estimate ${parts.promptTokens} plus output cap ${parts.outputCap})` : '';
  return `${subject} reserves ${tokens} tokens${sum}`;
}

/**
 * Names the minimum reservation of one model call, or the sum of several calls' minimum
 * reservations when `calls` is more than 1. A call's minimum reservation is its prompt estimate
 * plus the least output cap that can hold its file, which is the least that the call can reserve.
 */
export function describeMinimumReservation(
  subject: string,
  tokens: number,
  bound: EstimateBound,
  calls = 1,
): string {
  if (calls > 1) {
    return (
      `${subject} needs minimum reservations of ${bound} ${tokens} tokens in all, each call's ` +
      'prompt estimate plus the least output cap that can hold its file'
    );
  }
  return (
    `${subject} needs a minimum reservation of ${bound} ${tokens} tokens, its prompt estimate ` +
    'plus the least output cap that can hold the file'
  );
}

export async function getAllowance(db: Database | Transaction, userId: string): Promise<AllowanceState> {
  const rows = await db.execute<UserRow>(sql`
    SELECT plan, token_limit, tokens_used, tokens_reserved FROM users WHERE id = ${userId}
  `);
  const row = rows[0];
  if (!row) throw new Error(`User ${userId} not found.`);
  return toState({
    plan: row.plan,
    limit: Number(row.token_limit),
    used: Number(row.tokens_used),
    reserved: Number(row.tokens_reserved),
  });
}

/**
 * Checks, without reserving, whether `estimate` tokens fit the user's allowance now. `need`
 * names the estimate in the reason (see `describeExhausted`).
 */
export async function checkAllowance(
  db: Database,
  userId: string,
  estimate: number,
  need = describeReservation('this call', estimate),
): Promise<AllowanceCheck> {
  const state = await getAllowance(db, userId);
  if (state.limit < 0 || estimate <= state.remaining) return { allowed: true, ...state };
  return { allowed: false, reason: describeExhausted(state, need), ...state };
}

/**
 * Reserves `tokens` for one model call. With `minimumTokens`, it reserves the largest amount
 * from `minimumTokens` to `tokens` that fits the limit, and an unlimited plan always gets
 * `tokens`. The user's row is locked while the reservation is checked against the limit, so
 * concurrent reservations, from this process or any other, are serialised by PostgreSQL and
 * used + reserved never passes the limit. The reservation row expires, so a worker that dies
 * before settling keeps no tokens for longer than `ttlSeconds`.
 */
export async function reserveTokens(
  db: Database,
  input: {
    userId: string;
    tokens: number;
    minimumTokens?: number;
    idempotencyKey: string;
    ttlSeconds: number;
  },
): Promise<Reservation> {
  requireTokenCount('tokens', input.tokens);
  requireTokenCount('ttlSeconds', input.ttlSeconds);
  const tokens = Math.max(1, Math.ceil(input.tokens));
  let minimum = tokens;
  if (input.minimumTokens !== undefined) {
    requireTokenCount('minimumTokens', input.minimumTokens);
    if (input.minimumTokens > input.tokens) {
      throw new RangeError(
        `Invalid minimumTokens ${input.minimumTokens}: expected at most tokens (${input.tokens}). ` +
          'This is a bug in the caller.',
      );
    }
    minimum = Math.max(1, Math.ceil(input.minimumTokens));
  }
  const result = await applyForUser(db, input.userId, {
    kind: 'reserve',
    tokens,
    ...(minimum < tokens && { minimum }),
    key: input.idempotencyKey,
    ttl: input.ttlSeconds,
  });
  if (result.ok && result.reservationId) {
    return { ok: true, reservationId: result.reservationId, tokens: result.granted };
  }
  const state = toState(result);
  const need =
    minimum < tokens
      ? `this call needs a reservation of at least ${minimum} tokens`
      : describeReservation('this call', tokens);
  return { ok: false, reason: describeExhausted(state, need), ...state };
}

/**
 * Releases a reservation without charging, for a call that failed before using tokens.
 * Returns the tokens released, 0 when the reservation was already settled or swept.
 */
export async function releaseReservation(db: Database, reservationId: string): Promise<number> {
  const [owner] = await db.execute<{ user_id: string }>(
    sql`SELECT user_id FROM token_reservations WHERE id = ${reservationId}`,
  );
  if (!owner) return 0;
  const result = await applyForUser(db, owner.user_id, {
    kind: 'release',
    reservation: reservationId,
  });
  return result.released;
}

/**
 * Records one model call in the ledger and moves its reservation into tokens_used, in one
 * transaction. The ledger's unique idempotency key makes a repeated settle charge nothing: it
 * releases the reservation and reports `recorded: false`. Calls on the user's own key are
 * recorded with charged_tokens 0. The charge is capped at what the limit leaves after the
 * reservations of other calls, so a low prompt estimate never pushes used + reserved past the limit; the
 * ledger row keeps the full count. `reportedUsage`, when given, goes to the row's reported_*
 * columns.
 */
export async function settleCall(db: Database, input: SettleInput): Promise<Settlement> {
  requireUsage('usage', input.usage);
  const reported = input.reportedUsage ?? null;
  if (reported) requireUsage('reportedUsage', reported);
  const counts = wholeCounts(input.usage);
  const result = await applyForUser(db, input.userId, {
    kind: 'settle',
    reservation: input.reservationId,
    key: input.idempotencyKey,
    provider: input.provider,
    model: input.model,
    source: input.keySource,
    prompt: counts.prompt,
    completion: counts.completion,
    total: counts.total,
    reported: reported && wholeCounts(reported),
    patchRequest: input.patchRequestId ?? null,
    path: input.path ?? null,
  });
  return { recorded: result.ok, charged: result.charged, tokensUsed: result.used };
}

function requireUsage(name: string, usage: TokenUsage): void {
  requireTokenCount(`${name}.promptTokens`, usage.promptTokens);
  requireTokenCount(`${name}.completionTokens`, usage.completionTokens);
  requireTokenCount(`${name}.totalTokens`, usage.totalTokens);
}

/** Converts usage to the ledger's whole tokens, rounding a fraction up. */
function wholeCounts(usage: TokenUsage): { prompt: number; completion: number; total: number } {
  return {
    prompt: Math.ceil(usage.promptTokens),
    completion: Math.ceil(usage.completionTokens),
    total: Math.ceil(usage.totalTokens),
  };
}

/** Token counts and durations must be finite, non-negative and fit the ledger's integer columns. */
function requireTokenCount(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0 || value > 2 ** 31 - 1) {
    throw new RangeError(
      `Invalid ${name} ${value}: expected a number from 0 to ${2 ** 31 - 1}. ` +
        'This is a bug in the caller, not in the provider\'s answer.',
    );
  }
}

async function applyForUser(db: Database, userId: string, operation: AllowanceOperation) {
  try {
    return await applyAllowanceOperation(db, userId, operation);
  } catch (error) {
    if (postgresCode(error) === 'P0002') throw new Error(`User ${userId} not found.`);
    throw error;
  }
}

/** Deletes the user's reservations matching `condition` and returns their tokens to the user. */
async function releaseForUser(db: Database, userId: string, condition: SQL): Promise<number> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT 1 FROM users WHERE id = ${userId} FOR NO KEY UPDATE`);
    const rows = await tx.execute<{ tokens: string | number }>(sql`
      WITH released AS (
        DELETE FROM token_reservations WHERE user_id = ${userId} AND ${condition}
        RETURNING tokens
      )
      UPDATE users SET tokens_reserved = tokens_reserved - (SELECT sum(tokens) FROM released)
      WHERE id = ${userId} AND EXISTS (SELECT 1 FROM released)
      RETURNING (SELECT sum(tokens) FROM released) AS tokens
    `);
    return Number(rows[0]?.tokens ?? 0);
  });
}

/** Releases every reservation past its expiry; returns how many tokens were freed in total. */
export async function releaseExpiredReservations(db: Database): Promise<number> {
  const owners = await db.execute<{ user_id: string }>(sql`
    SELECT DISTINCT user_id FROM token_reservations WHERE expires_at < now()
  `);
  let released = 0;
  for (const owner of owners) {
    released += await releaseForUser(db, owner.user_id, sql`expires_at < now()`);
  }
  return released;
}

/**
 * Releases the reservations of one preview attempt whose worker died mid-call, so its retry
 * does not wait for them to expire. Model calls key their reservations
 * `patch request:SHA-256 of the path:generation:attempt:provider` (see `meterClient`). Returns
 * the tokens released.
 */
export async function releaseAttemptReservations(
  db: Database,
  patchRequestId: string,
  attempt: number,
): Promise<number> {
  const pattern = `${patchRequestId}:%:attempt-${attempt}:%`;
  const owners = await db.execute<{ user_id: string }>(sql`
    SELECT DISTINCT user_id FROM token_reservations WHERE idempotency_key LIKE ${pattern}
  `);
  let released = 0;
  for (const owner of owners) {
    released += await releaseForUser(db, owner.user_id, sql`idempotency_key LIKE ${pattern}`);
  }
  return released;
}
