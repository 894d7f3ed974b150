import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { executePrepared } from '../db/prepared.ts';
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
  | { ok: true; reservationId: string }
  | ({ ok: false; reason: string } & AllowanceState);

export interface SettleInput {
  userId: string;
  /** The reservation to release; null for calls that reserved nothing (own key). */
  reservationId: string | null;
  idempotencyKey: string;
  provider: Provider;
  model: string;
  keySource: KeySource;
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
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

function toState(row: UserRow): AllowanceState {
  const limit = Number(row.token_limit);
  const used = Number(row.tokens_used);
  const reserved = Number(row.tokens_reserved);
  return {
    plan: row.plan,
    limit,
    used,
    reserved,
    remaining: limit < 0 ? Number.POSITIVE_INFINITY : Math.max(limit - used - reserved, 0),
  };
}

/** Builds the sentence shown to a user whose allowance cannot cover a call. */
export function describeExhausted(state: AllowanceState, needed: number): string {
  const planName = state.plan[0]!.toUpperCase() + state.plan.slice(1);
  const advice =
    state.plan === 'free'
      ? 'Upgrade to the Pro plan, wait for the next period, or add your own Groq or Gemini key.'
      : 'Wait for the next period, switch to a larger plan, or add your own Groq or Gemini key.';
  return (
    `Not enough token allowance left: the ${planName} plan allows ${state.limit} tokens per period, ` +
    `${state.used} are used and ${state.reserved} are reserved by calls in progress, ` +
    `so ${state.remaining} remain but this call needs about ${needed}. ${advice}`
  );
}

export async function getAllowance(db: Database, userId: string): Promise<AllowanceState> {
  const rows = await db.execute<UserRow>(sql`
    SELECT plan, token_limit, tokens_used, tokens_reserved FROM users WHERE id = ${userId}
  `);
  const row = rows[0];
  if (!row) throw new Error(`User ${userId} not found.`);
  return toState(row);
}

/** Checks, without reserving, whether `estimate` tokens fit the user's allowance now. */
export async function checkAllowance(
  db: Database,
  userId: string,
  estimate: number,
): Promise<AllowanceCheck> {
  const state = await getAllowance(db, userId);
  if (state.limit < 0 || estimate <= state.remaining) return { allowed: true, ...state };
  return { allowed: false, reason: describeExhausted(state, estimate), ...state };
}

/**
 * Reserves `tokens` for one model call. The conditional UPDATE takes the user's row lock, so
 * concurrent reservations are serialised by PostgreSQL and used + reserved never passes the
 * limit. The reservation row expires, so a worker that dies before settling keeps no tokens
 * for longer than `ttlSeconds`.
 */
export async function reserveTokens(
  db: Database,
  input: { userId: string; tokens: number; idempotencyKey: string; ttlSeconds: number },
): Promise<Reservation> {
  const tokens = Math.max(1, Math.ceil(input.tokens));
  const rows = await executePrepared<{ id: string }>(db, sql`
    WITH held AS (
      UPDATE users SET tokens_reserved = tokens_reserved + ${tokens}
      WHERE id = ${input.userId}
        AND (token_limit < 0 OR tokens_used + tokens_reserved + ${tokens} <= token_limit)
      RETURNING id
    )
    INSERT INTO token_reservations (user_id, tokens, idempotency_key, expires_at)
    SELECT id, ${tokens}, ${input.idempotencyKey},
           now() + make_interval(secs => ${input.ttlSeconds})
    FROM held
    RETURNING id
  `);
  const reserved = rows[0];
  if (reserved) return { ok: true, reservationId: reserved.id };

  const state = await getAllowance(db, input.userId);
  return { ok: false, reason: describeExhausted(state, tokens), ...state };
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
  return releaseForUser(db, owner.user_id, sql`id = ${reservationId}`);
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

/**
 * Records one model call in the ledger and moves its reservation into tokens_used, in one
 * statement, so it is atomic and costs one round trip. The ledger's unique idempotency key
 * makes a repeated settle fail as a whole and charge nothing; that case releases the
 * reservation and reports `recorded: false`. Calls on the user's own key are recorded with
 * charged_tokens 0. Usage is capped at the limit, so a low prompt estimate never pushes used
 * past it.
 */
export async function settleCall(db: Database, input: SettleInput): Promise<Settlement> {
  const platform = input.keySource === 'platform';
  const total = input.usage.totalTokens;
  // The user row is locked first (the DELETE waits for it), the order every writer here keeps,
  // and NO KEY UPDATE does not conflict with the KEY SHARE lock of the ledger's foreign key.
  const statement = sql`
    WITH locked AS (
      SELECT id, token_limit, tokens_used, period_started_at FROM users
      WHERE id = ${input.userId} FOR NO KEY UPDATE
    ),
    released AS (
      DELETE FROM token_reservations
      WHERE id = ${input.reservationId}::uuid AND EXISTS (SELECT 1 FROM locked)
      RETURNING tokens
    ),
    priced AS (
      SELECT id, period_started_at, CASE
        WHEN NOT ${platform}::boolean THEN 0
        WHEN token_limit < 0 THEN ${total}::bigint
        ELSE GREATEST(LEAST(${total}::bigint, token_limit - tokens_used), 0)
      END AS charged
      FROM locked
    ),
    updated AS (
      UPDATE users SET
        tokens_used = users.tokens_used + priced.charged,
        tokens_reserved = users.tokens_reserved - COALESCE((SELECT sum(tokens) FROM released), 0)
      FROM priced WHERE users.id = priced.id
      RETURNING users.tokens_used, priced.charged, priced.period_started_at
    )
    INSERT INTO token_events (
      user_id, patch_request_id, path, provider, model, key_source,
      prompt_tokens, completion_tokens, total_tokens, charged_tokens,
      reservation_id, idempotency_key, period_started_at
    )
    SELECT
      ${input.userId}::uuid, ${input.patchRequestId ?? null}::uuid, ${input.path ?? null}::text,
      ${input.provider}, ${input.model}, ${input.keySource},
      ${input.usage.promptTokens}, ${input.usage.completionTokens}, ${total},
      updated.charged, ${input.reservationId}::uuid, ${input.idempotencyKey}, updated.period_started_at
    FROM updated
    RETURNING charged_tokens, (SELECT tokens_used FROM updated) AS tokens_used
  `;

  for (let attempt = 1; ; attempt++) {
    try {
      const rows = await executePrepared<{ charged_tokens: number; tokens_used: string | number }>(
        db,
        statement,
      );
      const row = rows[0];
      if (!row) throw new Error(`User ${input.userId} not found while settling a model call.`);
      return { recorded: true, charged: row.charged_tokens, tokensUsed: Number(row.tokens_used) };
    } catch (error) {
      const code = postgresCode(error);
      if (code === '23505') {
        if (input.reservationId) await releaseReservation(db, input.reservationId);
        const state = await getAllowance(db, input.userId);
        return { recorded: false, charged: 0, tokensUsed: state.used };
      }
      // A deadlock with a writer outside this module is retried; the statement is atomic.
      if (code === '40P01' && attempt < 3) continue;
      throw error;
    }
  }
}

function postgresCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: string } }).cause;
  return cause?.code ?? (error as { code?: string }).code;
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
