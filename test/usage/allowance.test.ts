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
import { seededRandom } from '../helpers/seeded-random.ts';

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

async function chargedSum(userId: string): Promise<number> {
  const [row] = await database.db
    .select({ sum: sql<string>`coalesce(sum(${tokenEvents.chargedTokens}), 0)` })
    .from(tokenEvents)
    .where(eq(tokenEvents.userId, userId));
  return Number(row!.sum);
}

/**
 * Reads the user's used + reserved tokens over and over until `stop()`, which returns the
 * largest sum read.
 */
function sampleMaxCommitted(userId: string) {
  let maxObserved = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const state = await getAllowance(database.db, userId);
      maxObserved = Math.max(maxObserved, state.used + state.reserved);
    }
  })();
  return {
    async stop(): Promise<number> {
      sampling = false;
      await sampler;
      return maxObserved;
    },
  };
}

describe('reserveTokens', () => {
  it('holds 200 concurrent reservations to the limit', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    // Four pools stand for four worker processes: each sends its own operations together,
    // and the pools race for the user's row inside PostgreSQL.
    const pools = Array.from({ length: 4 }, () => connectDatabase(database.url, { max: 10 }));
    const sampler = sampleMaxCommitted(user.id);

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
    const maxObserved = await sampler.stop();
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

describe('reserveTokens with a range', () => {
  function reserveRange(userId: string, minimumTokens: number, tokens: number, idempotencyKey: string) {
    return reserveTokens(database.db, { userId, tokens, minimumTokens, idempotencyKey, ttlSeconds: 600 });
  }

  it('grants racing ranges within the limit', async () => {
    // 200 tokens are left, and the calls' minimums add up to several times that. Each call
    // settles less than it was granted, so room opens again while others reserve.
    const user = await createUser({ tokenLimit: 1000, tokensUsed: 800 });
    const pools = Array.from({ length: 4 }, () => connectDatabase(database.url, { max: 10 }));
    const sampler = sampleMaxCommitted(user.id);

    const random = seededRandom(7);
    const calls = Array.from({ length: 150 }, (_, index) => {
      const minimum = 1 + Math.floor(random() * 20);
      return { index, minimum, tokens: minimum + Math.floor(random() * 60), usedShare: random() / 8 };
    });
    // 24 callers race, each reserving and settling one call after another.
    const run = async (call: (typeof calls)[number]) => {
      const key = `range-race:${call.index}`;
      const racing = pools[call.index % pools.length]!;
      const reservation = await reserveTokens(racing.db, {
        userId: user.id,
        tokens: call.tokens,
        minimumTokens: call.minimum,
        idempotencyKey: key,
        ttlSeconds: 600,
      });
      if (!reservation.ok) return { ...call, granted: null, remainingThen: reservation.remaining, charged: 0 };
      const used = Math.max(1, Math.floor(reservation.tokens * call.usedShare));
      const settled = await settleCall(racing.db, settleInput(user.id, reservation.reservationId, key, used));
      return { ...call, granted: reservation.tokens, remainingThen: null, charged: settled.charged };
    };
    const outcomes: Awaited<ReturnType<typeof run>>[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 24 }, async () => {
        while (next < calls.length) outcomes.push(await run(calls[next++]!));
      }),
    );
    const maxObserved = await sampler.stop();
    await Promise.all(pools.map((pool) => pool.close()));

    const granted = outcomes.filter((outcome) => outcome.granted !== null);
    const rejected = outcomes.filter((outcome) => outcome.granted === null);
    expect(granted.length).toBeGreaterThan(0);
    expect(rejected.length).toBeGreaterThan(0);
    expect(granted.some((outcome) => outcome.granted! < outcome.tokens)).toBe(true);
    for (const outcome of granted) {
      expect(outcome.granted, `call ${outcome.index}`).toBeGreaterThanOrEqual(outcome.minimum);
      expect(outcome.granted, `call ${outcome.index}`).toBeLessThanOrEqual(outcome.tokens);
    }
    // A rejection reports what was left when its reservation was checked, so its minimum
    // did not fit then.
    for (const outcome of rejected) {
      expect(outcome.minimum, `call ${outcome.index}`).toBeGreaterThan(outcome.remainingThen!);
    }
    expect(maxObserved).toBeLessThanOrEqual(1000);
    const final = await getAllowance(database.db, user.id);
    expect(final.used).toBeLessThanOrEqual(1000);
    expect(final.reserved).toBe(0);
    expect(final.used).toBe(800 + (await chargedSum(user.id)));
    expect(final.used).toBe(800 + outcomes.reduce((sum, outcome) => sum + outcome.charged, 0));
  });

  it('grants what is left when the minimum fits', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    await hold(user.id, 700, 'range-other');

    const trimmed = await reserveRange(user.id, 200, 500, 'range-trimmed');
    const nothingLeft = await reserveRange(user.id, 1, 50, 'range-nothing-left');

    expect(trimmed).toMatchObject({ ok: true, tokens: 300 });
    expect(nothingLeft.ok).toBe(false);
    if (nothingLeft.ok) return;
    expect(nothingLeft.reason).toContain('so 0 remain but this call needs a reservation of at least 1 tokens.');
    const [row] = await database.db
      .select({ tokens: tokenReservations.tokens })
      .from(tokenReservations)
      .where(eq(tokenReservations.id, trimmed.ok ? trimmed.reservationId : ''));
    expect(row!.tokens).toBe(300);
    expect(await getAllowance(database.db, user.id)).toMatchObject({ reserved: 1000, remaining: 0 });
  });

  it('grants the full range when it fits', async () => {
    const user = await createUser({ tokenLimit: 1000, tokensUsed: 400 });
    const reservation = await reserveRange(user.id, 100, 600, 'range-fits');
    expect(reservation).toMatchObject({ ok: true, tokens: 600 });
  });

  it('rejects a range whose minimum does not fit', async () => {
    const user = await createUser({ tokenLimit: 1000, tokensUsed: 950 });
    const reservation = await reserveRange(user.id, 60, 200, 'range-too-big');
    expect(reservation.ok).toBe(false);
    if (reservation.ok) return;
    expect(reservation.remaining).toBe(50);
    expect(reservation.reason).toContain('so 50 remain but this call needs a reservation of at least 60 tokens.');
    expect((await getAllowance(database.db, user.id)).reserved).toBe(0);
  });

  it('grants the requested tokens when unlimited', async () => {
    const user = await createUser({ tokenLimit: -1, plan: 'enterprise', tokensUsed: 10_000_000 });
    const reservation = await reserveRange(user.id, 10, 1_000_000, 'range-unlimited');
    expect(reservation).toMatchObject({ ok: true, tokens: 1_000_000 });
    expect((await getAllowance(database.db, user.id)).reserved).toBe(1_000_000);
  });

  it('sweeps, releases and settles the granted tokens', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    await hold(user.id, 600, 'granted-other');
    const expired = await reserveRange(user.id, 100, 800, 'granted-expired');
    if (!expired.ok) throw new Error(expired.reason);
    expect(expired.tokens).toBe(400);
    await database.db
      .update(tokenReservations)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(tokenReservations.id, expired.reservationId));
    expect(await releaseExpiredReservations(database.db)).toBeGreaterThanOrEqual(400);
    expect((await getAllowance(database.db, user.id)).reserved).toBe(600);

    const released = await reserveRange(user.id, 100, 800, 'granted-released');
    if (!released.ok) throw new Error(released.reason);
    expect(released.tokens).toBe(400);
    expect(await releaseReservation(database.db, released.reservationId)).toBe(400);

    const settled = await reserveRange(user.id, 100, 800, 'granted-settled');
    if (!settled.ok) throw new Error(settled.reason);
    expect(settled.tokens).toBe(400);
    const settlement = await settleCall(
      database.db,
      settleInput(user.id, settled.reservationId, 'granted-settled', 700),
    );
    // The charge is capped at what the other hold of 600 leaves.
    expect(settlement.charged).toBe(400);
    expect(await getAllowance(database.db, user.id)).toMatchObject({ used: 400, reserved: 600 });
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

  /**
   * Holds 100 tokens for the user, then sends a reservation of 1 token alone and a settle of
   * the hold that fails inside PostgreSQL. Operations sent next wait for the reservation and go
   * in one statement with the broken settle.
   */
  async function startBrokenBatch(userId: string, key: string) {
    const first = await hold(userId, 100, key);
    await idle();

    // The blocker is sent alone at once; the rest wait for it and are sent together.
    const blocker = reserve(userId, 1, `${key}:blocker`);
    // A patch request that does not exist breaks the ledger's foreign key inside PostgreSQL.
    const broken = settleCall(database.db, {
      ...settleInput(userId, first.reservationId, key, 40),
      patchRequestId: '00000000-0000-4000-8000-000000000000',
    });
    return { blocker, broken };
  }

  it('fails only the broken operation of a batch', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    const { blocker, broken } = await startBrokenBatch(user.id, 'held');
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

  it('grants the ranges of a resent batch once', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    // The broken settle fails the batch, which is then sent again one operation at a time.
    const { blocker, broken } = await startBrokenBatch(user.id, 'range-held');
    const ranges = Array.from({ length: 3 }, (_, index) =>
      reserveTokens(database.db, {
        userId: user.id,
        tokens: 400,
        minimumTokens: 50,
        idempotencyKey: `range-resent:${index}`,
        ttlSeconds: 600,
      }),
    );

    await expect(broken).rejects.toThrow();
    await blocker;
    const granted = (await Promise.all(ranges)).map((reservation) => (reservation.ok ? reservation.tokens : 0));
    // 899 were left after the hold and the blocker: 400, 400, then the last 99.
    expect(granted).toEqual([400, 400, 99]);
    const rows = await database.db
      .select({ tokens: tokenReservations.tokens })
      .from(tokenReservations)
      .where(eq(tokenReservations.userId, user.id));
    expect(rows.map((row) => row.tokens).sort((left, right) => left - right)).toEqual([1, 99, 100, 400, 400]);
    expect((await getAllowance(database.db, user.id)).reserved).toBe(1000);
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

  it('rejects a minimum above tokens', async () => {
    const user = await createUser({ tokenLimit: 1000 });
    await expect(
      reserveTokens(database.db, {
        userId: user.id,
        tokens: 100,
        minimumTokens: 101,
        idempotencyKey: 'bad-range',
        ttlSeconds: 60,
      }),
    ).rejects.toThrow('Invalid minimumTokens 101: expected at most tokens (100).');
    expect((await getAllowance(database.db, user.id)).reserved).toBe(0);
  });

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
