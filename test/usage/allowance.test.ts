import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase } from '../../src/db/client.ts';
import { tokenEvents, tokenReservations, users } from '../../src/db/schema/index.ts';
import {
  checkAllowance,
  getAllowance,
  releaseExpiredReservations,
  releaseReservation,
  reserveTokens,
  settleCall,
} from '../../src/usage/allowance.ts';
import { allowanceBatchCounters } from '../../src/usage/allowance-batch.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

async function createUser(values: Partial<typeof users.$inferInsert> = {}) {
  const [user] = await database.db
    .insert(users)
    .values({ login: `user-${Math.random().toString(36).slice(2, 10)}`, ...values })
    .returning();
  return user!;
}

function reserve(userId: string, tokens: number, idempotencyKey: string) {
  return reserveTokens(database.db, { userId, tokens, idempotencyKey, ttlSeconds: 600 });
}

/** Reserves and fails the test when the tokens do not fit. */
async function hold(userId: string, tokens: number, idempotencyKey: string) {
  const reservation = await reserve(userId, tokens, idempotencyKey);
  if (!reservation.ok) throw new Error(`reservation ${idempotencyKey} failed: ${reservation.reason}`);
  return reservation;
}

function usage(totalTokens: number) {
  const promptTokens = Math.floor(totalTokens / 2);
  return { promptTokens, completionTokens: totalTokens - promptTokens, totalTokens };
}

async function chargedSum(userId: string): Promise<number> {
  const [row] = await database.db
    .select({ sum: sql<string>`coalesce(sum(${tokenEvents.chargedTokens}), 0)` })
    .from(tokenEvents)
    .where(eq(tokenEvents.userId, userId));
  return Number(row!.sum);
}

describe('reserveTokens', () => {
  it('holds 200 concurrent reservations to the limit', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    // Four pools stand for four worker processes: each sends its own operations together,
    // and the pools race for the user's row inside PostgreSQL.
    const pools = Array.from({ length: 4 }, () => connectDatabase(database.url, { max: 10 }));
    let maxObserved = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const state = await getAllowance(database.db, user.id);
        maxObserved = Math.max(maxObserved, state.used + state.reserved);
      }
    })();

    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const attempts = Array.from({ length: 200 }, (_, index) => {
      const tokens = 1 + Math.floor(random() * 120);
      const actual = Math.max(1, Math.floor(tokens * random()));
      return { index, tokens, actual };
    });

    const results = await Promise.all(
      attempts.map(async ({ index, tokens, actual }) => {
        const key = `race:${index}`;
        const racing = pools[index % pools.length]!;
        const reservation = await reserveTokens(racing.db, {
          userId: user.id,
          tokens,
          idempotencyKey: key,
          ttlSeconds: 600,
        });
        if (!reservation.ok) return { accepted: false, charged: 0 };
        const settled = await settleCall(racing.db, {
          userId: user.id,
          reservationId: reservation.reservationId,
          idempotencyKey: key,
          provider: 'groq',
          model: 'test-model',
          keySource: 'platform',
          usage: usage(actual),
        });
        return { accepted: true, charged: settled.charged };
      }),
    );
    sampling = false;
    await sampler;
    await Promise.all(pools.map((pool) => pool.close()));

    const final = await getAllowance(database.db, user.id);
    const accepted = results.filter((result) => result.accepted).length;
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(200);
    expect(maxObserved).toBeLessThanOrEqual(1000);
    expect(final.used).toBeLessThanOrEqual(1000);
    expect(final.reserved).toBe(0);
    expect(final.used).toBe(await chargedSum(user.id));
    expect(final.used).toBe(results.reduce((sum, result) => sum + result.charged, 0));
  });

  it('holds concurrent first calls of a new user to the limit', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const racing = connectDatabase(database.url, { max: 20 });
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        reserveTokens(racing.db, {
          userId: user.id,
          tokens: 300,
          idempotencyKey: `first:${index}`,
          ttlSeconds: 600,
        }),
      ),
    );
    await racing.close();
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(3);
    const state = await getAllowance(database.db, user.id);
    expect(state.reserved).toBe(900);
  });

  it('rejects a reservation that does not fit, with the reason', async () => {
    const user = await createUser({ tokenLimit: 1000, tokensUsed: 990 });
    const reservation = await reserve(user.id, 50, 'too-big');
    expect(reservation.ok).toBe(false);
    if (reservation.ok) return;
    expect(reservation.remaining).toBe(10);
    expect(reservation.reason).toContain('Free plan allows 1000 tokens');
    expect(reservation.reason).toContain('990 are used');
    expect(reservation.reason).toContain('so 10 remain but this call reserves 50 tokens.');
    expect(reservation.reason).toContain('add your own Groq or Gemini key');
  });

  it('never limits an unlimited user', async () => {
    const user = await createUser({ tokenLimit: -1, plan: 'enterprise', tokensUsed: 10_000_000 });
    const reservation = await reserve(user.id, 1_000_000, 'huge');
    expect(reservation.ok).toBe(true);
    const check = await checkAllowance(database.db, user.id, 5_000_000);
    expect(check.allowed).toBe(true);
  });
});

describe('exhausted allowance message', () => {
  it('suggests a larger plan below Enterprise only', async () => {
    const advice = new Map([
      ['free', 'Upgrade to the Pro plan'],
      ['pro', 'switch to a larger plan'],
    ]);
    for (const plan of ['free', 'pro', 'enterprise'] as const) {
      const user = await createUser({ plan, tokenLimit: 1000, tokensUsed: 1000 });
      const reservation = await reserve(user.id, 10, `exhausted-${plan}`);
      expect(reservation.ok, plan).toBe(false);
      const reason = reservation.ok ? '' : reservation.reason;
      expect(reason, plan).toMatch(/wait for the next period/i);
      expect(reason, plan).toContain('add your own Groq or Gemini key');
      if (advice.has(plan)) expect(reason, plan).toContain(advice.get(plan));
      else expect(reason, plan).not.toMatch(/larger plan|Pro plan/);
    }
  });
});

describe('settleCall', () => {
  it('charges a repeated settle once', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const reservation = await hold(user.id, 400, 'twice');
    const input = {
      userId: user.id,
      reservationId: reservation.reservationId,
      idempotencyKey: 'twice',
      provider: 'groq' as const,
      model: 'm',
      keySource: 'platform' as const,
      usage: usage(250),
    };
    const first = await settleCall(database.db, input);
    const second = await settleCall(database.db, input);
    expect(first).toMatchObject({ recorded: true, charged: 250, tokensUsed: 250 });
    expect(second).toMatchObject({ recorded: false, charged: 0, tokensUsed: 250 });
    const state = await getAllowance(database.db, user.id);
    expect(state.reserved).toBe(0);
    expect(await chargedSum(user.id)).toBe(250);
  });

  it('records own-key calls without charging', async () => {
    const user = await createUser({ tokenLimit: 1000, tokensUsed: 100 });
    const settled = await settleCall(database.db, {
      userId: user.id,
      reservationId: null,
      idempotencyKey: 'own-key',
      provider: 'gemini',
      model: 'g',
      keySource: 'user',
      usage: usage(5000),
    });
    expect(settled).toMatchObject({ recorded: true, charged: 0, tokensUsed: 100 });
    const [event] = await database.db
      .select()
      .from(tokenEvents)
      .where(eq(tokenEvents.idempotencyKey, 'own-key'));
    expect(event).toMatchObject({ keySource: 'user', totalTokens: 5000, chargedTokens: 0 });
  });

  it('caps usage above the estimate at the limit', async () => {
    const user = await createUser({ tokenLimit: 1000, tokensUsed: 800 });
    const reservation = await hold(user.id, 150, 'over');
    const settled = await settleCall(database.db, {
      userId: user.id,
      reservationId: reservation.reservationId,
      idempotencyKey: 'over',
      provider: 'groq',
      model: 'm',
      keySource: 'platform',
      usage: usage(400),
    });
    expect(settled.tokensUsed).toBe(1000);
    expect(settled.charged).toBe(200);
    expect(await chargedSum(user.id)).toBe(200);
  });

  it('caps usage above the estimate at what other holds leave', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const first = await hold(user.id, 500, 'room-first');
    await hold(user.id, 500, 'room-second');
    const settled = await settleCall(database.db, {
      userId: user.id,
      reservationId: first.reservationId,
      idempotencyKey: 'room-first',
      provider: 'groq',
      model: 'm',
      keySource: 'platform',
      usage: usage(800),
    });
    expect(settled.charged).toBe(500);
    const state = await getAllowance(database.db, user.id);
    expect(state.used + state.reserved).toBe(1000);
    const [row] = await database.db
      .select({ total: tokenEvents.totalTokens, charged: tokenEvents.chargedTokens })
      .from(tokenEvents)
      .where(eq(tokenEvents.idempotencyKey, 'room-first'));
    expect(row).toEqual({ total: 800, charged: 500 });
  });

  it('keeps the limit when a swept reservation settles late', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const late = await hold(user.id, 600, 'late');
    await database.db
      .update(tokenReservations)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(tokenReservations.id, late.reservationId));
    expect(await releaseExpiredReservations(database.db)).toBeGreaterThanOrEqual(600);
    await hold(user.id, 900, 'after-sweep');

    const settled = await settleCall(database.db, {
      userId: user.id,
      reservationId: late.reservationId,
      idempotencyKey: 'late',
      provider: 'groq',
      model: 'm',
      keySource: 'platform',
      usage: usage(500),
    });
    expect(settled.charged).toBe(100);
    expect(await getAllowance(database.db, user.id)).toMatchObject({ used: 100, reserved: 900 });
  });

  it('rounds fractional usage up', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const reservation = await hold(user.id, 300, 'fraction');
    const settled = await settleCall(database.db, {
      userId: user.id,
      reservationId: reservation.reservationId,
      idempotencyKey: 'fraction',
      provider: 'groq',
      model: 'm',
      keySource: 'platform',
      usage: { promptTokens: 60.2, completionTokens: 60.3, totalTokens: 120.5 },
    });
    expect(settled.charged).toBe(121);
    expect(await getAllowance(database.db, user.id)).toMatchObject({ used: 121, reserved: 0 });
  });

  it('leaves nothing charged when the transaction fails', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const reservation = await hold(user.id, 300, 'broken');
    // A patch request that does not exist fails the ledger insert inside the transaction,
    // after the reservation row was deleted and the charge computed.
    const failing = settleCall(database.db, {
      userId: user.id,
      reservationId: reservation.reservationId,
      idempotencyKey: 'broken',
      provider: 'groq',
      model: 'm',
      keySource: 'platform',
      usage: { promptTokens: 100, completionTokens: 100, totalTokens: 200 },
      patchRequestId: '00000000-0000-4000-8000-000000000000',
    });
    await expect(failing).rejects.toThrow('token_events_patch_request_id_patch_requests_id_fk');
    const state = await getAllowance(database.db, user.id);
    expect(state.used).toBe(0);
    expect(state.reserved).toBe(300);
  });
});

describe('releasing reservations', () => {
  it('releases a failed call', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const reservation = await hold(user.id, 500, 'fails');
    expect(await releaseReservation(database.db, reservation.reservationId)).toBe(500);
    expect(await releaseReservation(database.db, reservation.reservationId)).toBe(0);
    const state = await getAllowance(database.db, user.id);
    expect(state).toMatchObject({ used: 0, reserved: 0, remaining: 1000 });
  });

  it('sweeps expired reservations only', async () => {
    const user = await createUser({ tokenLimit: 1000, tokensUsed: 100 });
    const expired = await reserve(user.id, 200, 'expired');
    const live = await reserve(user.id, 300, 'live');
    if (!expired.ok || !live.ok) throw new Error('reservation failed');
    await database.db
      .update(tokenReservations)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(tokenReservations.id, expired.reservationId));

    const released = await releaseExpiredReservations(database.db);
    expect(released).toBeGreaterThanOrEqual(200);
    const state = await getAllowance(database.db, user.id);
    expect(state.used).toBe(100);
    expect(state.reserved).toBe(300);
  });
});

describe('batched allowance operations', () => {
  /** Lets the user's queue finish its turn, so the next operation is sent alone at once. */
  const idle = () => new Promise<void>((resolve) => setImmediate(resolve));

  function settleInput(userId: string, reservationId: string | null, key: string, total: number) {
    return {
      userId,
      reservationId,
      idempotencyKey: key,
      provider: 'groq' as const,
      model: 'test-model',
      keySource: 'platform' as const,
      usage: usage(total),
    };
  }

  it('shares statements between concurrent calls', async () => {
    const user = await createUser({ tokenLimit: -1, plan: 'enterprise' });
    const before = allowanceBatchCounters();
    const reservations = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        reserve(user.id, 10, `together:${index}`),
      ),
    );
    const after = allowanceBatchCounters();
    expect(reservations.every((reservation) => reservation.ok)).toBe(true);
    expect(after.operations - before.operations).toBe(40);
    // The first operation goes alone; the others wait for it and go in one or two statements.
    expect(after.statements - before.statements).toBeLessThanOrEqual(3);
    expect((await getAllowance(database.db, user.id)).reserved).toBe(400);
  });

  it('fails only the broken operation of a batch', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const first = await hold(user.id, 100, 'held');
    await idle();

    // The blocker is sent alone at once; the rest wait for it and are sent together.
    const blocker = reserve(user.id, 1, 'blocker');
    // A patch request that does not exist breaks the ledger's foreign key inside PostgreSQL.
    const broken = settleCall(database.db, {
      ...settleInput(user.id, first.reservationId, 'held', 40),
      patchRequestId: '00000000-0000-4000-8000-000000000000',
    });
    const others = Array.from({ length: 3 }, (_, index) =>
      reserve(user.id, 50, `other:${index}`),
    );

    await expect(broken).rejects.toThrow();
    const fine = await Promise.all([blocker, ...others]);
    expect(fine.map((reservation) => reservation.ok)).toEqual([true, true, true, true]);
    const state = await getAllowance(database.db, user.id);
    expect(state.used).toBe(0);
    // The broken settle left its reservation of 100 in place; 1 + 3 * 50 were added.
    expect(state.reserved).toBe(251);
    expect(await chargedSum(user.id)).toBe(0);
  });

  it('charges a settle repeated in one batch once', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const reservation = await hold(user.id, 300, 'twice-together');
    await idle();

    const before = allowanceBatchCounters();
    const blocker = reserve(user.id, 1, 'blocker');
    const settled = await Promise.all([
      settleCall(database.db, settleInput(user.id, reservation.reservationId, 'twice-together', 120)),
      settleCall(database.db, settleInput(user.id, reservation.reservationId, 'twice-together', 120)),
    ]);
    await blocker;
    expect(allowanceBatchCounters().statements - before.statements).toBe(2);

    expect(settled.map((settlement) => settlement.recorded).sort()).toEqual([false, true]);
    expect(settled.map((settlement) => settlement.charged).sort()).toEqual([0, 120]);
    const state = await getAllowance(database.db, user.id);
    expect(state.used).toBe(120);
    expect(state.reserved).toBe(1);
    expect(await chargedSum(user.id)).toBe(120);
  });

  it('applies settles before reservations', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const big = await hold(user.id, 900, 'big');
    await idle();

    const blocker = reserve(user.id, 1, 'blocker');
    // Sent in the order reserve, settle: the reservation only fits once the settle has
    // returned 900 reserved tokens and charged 200.
    const waiting = reserve(user.id, 500, 'waiting');
    const settled = settleCall(database.db, settleInput(user.id, big.reservationId, 'big', 200));
    const [blocked, reserved, settlement] = await Promise.all([blocker, waiting, settled]);
    expect(blocked.ok).toBe(true);
    expect(reserved.ok).toBe(true);
    expect(settlement.charged).toBe(200);
    const state = await getAllowance(database.db, user.id);
    expect(state).toMatchObject({ used: 200, reserved: 501, remaining: 299 });
  });

  it('fails alone an operation JSON cannot hold', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    await idle();
    const blocker = reserve(user.id, 1, 'json-blocker');
    const broken = settleCall(database.db, {
      ...settleInput(user.id, null, 'json-broken', 10),
      model: 1n as unknown as string,
    });
    const others = [reserve(user.id, 10, 'json-a'), reserve(user.id, 10, 'json-b')];
    await expect(broken).rejects.toThrow('BigInt');
    const fine = await Promise.all([blocker, ...others]);
    expect(fine.map((reservation) => reservation.ok)).toEqual([true, true, true]);
    expect((await getAllowance(database.db, user.id)).reserved).toBe(21);
  });

  it('reports a missing user', async () => {
    await expect(
      reserve('00000000-0000-4000-8000-000000000000', 10, 'nobody'),
    ).rejects.toThrow('User 00000000-0000-4000-8000-000000000000 not found.');
  });
});

describe('allowance input checks', () => {
  it.each([Number.NaN, -1, Number.POSITIVE_INFINITY, 2 ** 31])(
    'refuses to reserve %s tokens',
    async (tokens) => {
      const user = await createUser({ tokenLimit: 1000 });
      await expect(
        reserveTokens(database.db, { userId: user.id, tokens, idempotencyKey: 'bad', ttlSeconds: 60 }),
      ).rejects.toThrow(`Invalid tokens ${tokens}: expected a number from 0 to 2147483647.`);
      expect((await getAllowance(database.db, user.id)).reserved).toBe(0);
    },
  );

  it('refuses to settle a negative total and keeps the hold', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const reservation = await hold(user.id, 100, 'negative-total');
    await expect(
      settleCall(database.db, {
        userId: user.id,
        reservationId: reservation.reservationId,
        idempotencyKey: 'negative-total',
        provider: 'groq',
        model: 'm',
        keySource: 'platform',
        usage: { promptTokens: 1, completionTokens: 1, totalTokens: -2 },
      }),
    ).rejects.toThrow('Invalid usage.totalTokens -2');
    expect(await getAllowance(database.db, user.id)).toMatchObject({ used: 0, reserved: 100 });
    expect(await chargedSum(user.id)).toBe(0);
  });
});
