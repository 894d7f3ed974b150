import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AllowanceExceededError, meterClient, type MeterOptions } from '../../src/autofix/metered-client.ts';
import { connectDatabase } from '../../src/db/client.ts';
import { patchRequests, tokenEvents, users } from '../../src/db/schema/index.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { ProviderError } from '../../src/llm/errors.ts';
import { createGroqClient } from '../../src/llm/groq.ts';
import { estimatePromptTokens, estimateTextTokens } from '../../src/llm/prompt.ts';
import type { ModelClient } from '../../src/llm/types.ts';
import { releaseAttemptReservations, reserveTokens } from '../../src/usage/allowance.ts';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import { startCuttablePostgresProxy } from '../db/fixtures/postgres-proxy.ts';
import { createRunWithFindings, createSignedInUser } from '../helpers/web.ts';

// Checking the counts threw a stack overflow on long runs of one character in Node 20. The
// checks take any text now, so `billing.fail` injects such a failure to cover the settle after it.
const billing = vi.hoisted(() => ({ fail: false }));
vi.mock('../../src/autofix/billed-usage.ts', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/autofix/billed-usage.ts')>();
  const failing = <Args extends unknown[], Result>(bill: (...args: Args) => Result) => {
    return (...args: Args): Result => {
      if (billing.fail) throw new RangeError('Maximum call stack size exceeded');
      return bill(...args);
    };
  };
  return {
    ...actual,
    billResponse: failing(actual.billResponse),
    billFailedResponse: failing(actual.billFailedResponse),
  };
});

let context: TestContext;
let groq: FakeGroq;

beforeAll(async () => {
  context = await createTestContext();
  groq = await startFakeGroq();
});
afterAll(async () => {
  await groq?.close();
  await context.close();
});

/** Creates a client of the fake Groq that retries once, 10 ms after a failure. */
function groqClient(): ModelClient {
  return createGroqClient({
    apiKey: 'gsk_TESTONLY0000000000000000000000000000000000000000000000',
    baseUrl: groq.url,
    model: 'llama-3.3-70b-versatile',
    maxRetries: 1,
    timeoutMs: 5000,
    retryBaseDelayMs: 10,
  });
}

/** A reply with status 200 whose choices cannot be read, billed for 42 tokens. */
const unreadableBilled = {
  status: 200,
  body: { choices: 'unreadable', usage: { prompt_tokens: 40, completion_tokens: 2, total_tokens: 42 } },
};

/**
 * A client that returns `totalTokens` of usage for every call, without any network. The
 * settle replaces counts above the maximum of `request` (a total of 248).
 */
function fixedUsageClient(totalTokens: number): ModelClient {
  return {
    provider: 'groq',
    model: 'llama-3.3-70b-versatile',
    generate: async () => ({
      provider: 'groq',
      model: 'llama-3.3-70b-versatile',
      text: 'fixed',
      finishReason: 'stop',
      usage: { promptTokens: totalTokens - 10, completionTokens: 10, totalTokens },
    }),
    listModels: async () => [],
  };
}

async function newPatchRequest(tokenLimit = 100_000) {
  const user = await createSignedInUser(context.db, {
    login: `meter-${randomBytes(4).toString('hex')}`,
    plan: 'pro',
    tokenLimit,
  });
  const { run } = await createRunWithFindings(context.db, { userId: user.userId, findings: [] });
  const [request] = await context.db
    .insert(patchRequests)
    .values({ runId: run.id, userId: user.userId })
    .returning({ id: patchRequests.id });
  return { userId: user.userId, patchRequestId: request!.id };
}

function meter(
  client: ModelClient,
  input: { userId: string; patchRequestId: string; path: string; attempt: number } & Partial<MeterOptions>,
) {
  return meterClient(client, {
    db: context.db,
    keySource: 'platform',
    generation: 0,
    reservationTtlSeconds: 600,
    ...input,
  });
}

const request = { system: 'Return the file.', user: 'data', maxOutputTokens: 100 };

/**
 * Connects to the test database through a proxy that `cut()` makes unreachable until
 * `restore()` (see startCuttablePostgresProxy).
 */
async function cuttableDatabase() {
  const proxy = await startCuttablePostgresProxy(new URL(context.database.url));
  const handle = connectDatabase(proxy.url.toString());
  return {
    db: handle.db,
    cut: () => proxy.cut(),
    restore: () => proxy.restore(),
    async close() {
      // After refused connects, end() waited out its default timeout of 5 s in this test.
      await handle.sql.end({ timeout: 0 });
      await proxy.close();
    },
  };
}

/** A client of `fixedUsageClient(totalTokens)` that runs `whileCalling` before it returns. */
function clientThatCuts(totalTokens: number, whileCalling: () => Promise<void>): ModelClient {
  const fixed = fixedUsageClient(totalTokens);
  return {
    ...fixed,
    generate: async (...args) => {
      await whileCalling();
      return fixed.generate(...args);
    },
  };
}

/** Reserves `tokens` for another call of the user, which stays in flight. */
async function holdOtherCall(userId: string, tokens: number): Promise<void> {
  const reservation = await reserveTokens(context.db, {
    userId,
    tokens,
    idempotencyKey: `other-call-${randomBytes(4).toString('hex')}`,
    ttlSeconds: 600,
  });
  if (!reservation.ok) throw new Error(reservation.reason);
}

/** Returns the output cap of the fake Groq's request at `index`, as the SDK sent it. */
function maxCompletionTokens(index: number): unknown {
  return (groq.requests[index]!.body as { max_completion_tokens?: unknown }).max_completion_tokens;
}

/** Sends `request` to the fake Groq through a metered client with `options`. */
function generateWithGroq(options: Parameters<typeof meter>[1]) {
  return meter(groqClient(), options).generate(request);
}

describe('meterClient', () => {
  it('charges a call for a very long path', async () => {
    // Git allows paths longer than PostgreSQL's btree index entries (about 2,700 bytes), and
    // random text is not compressed below that.
    const path = Array.from({ length: 12 }, () => randomBytes(120).toString('hex')).join('/');
    const { userId, patchRequestId } = await newPatchRequest();

    await meter(fixedUsageClient(120), { userId, patchRequestId, path, attempt: 0 }).generate(request);

    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(120);
    expect(user!.tokensReserved).toBe(0);
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger.map((event) => [event.path, event.chargedTokens])).toEqual([[path, 120]]);
  });

  it("keeps another attempt's hold for a path naming an attempt", async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    let finish: () => void = () => {};
    const replyAllowed = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const slow: ModelClient = {
      ...fixedUsageClient(500),
      generate: async (...args) => {
        await replyAllowed;
        return fixedUsageClient(500).generate(...args);
      },
    };
    const call = meter(slow, { userId, patchRequestId, path: 'src/x:attempt-0:y.ts', attempt: 1 }).generate(request);
    await expect.poll(async () => {
      const [user] = await context.db.select().from(users).where(eq(users.id, userId));
      return user!.tokensReserved;
    }).toBeGreaterThan(0);

    // Only attempt 0 died; the hold of attempt 1 belongs to a call still running.
    const released = await releaseAttemptReservations(context.db, patchRequestId, 0);

    expect(released).toBe(0);
    finish();
    await call;
  });

  it('charges an unreadable billed response', async () => {
    groq.reset();
    const { userId, patchRequestId } = await newPatchRequest();
    groq.enqueue(unreadableBilled, { text: 'fixed\n' });

    const result = await meter(groqClient(), { userId, patchRequestId, path: 'a.ts', attempt: 0 })
      .generate(request);

    expect(result.text).toBe('fixed\n');
    const success = groq.requests[1]!.reply!.usage!.total_tokens;
    const ledger = await context.db
      .select()
      .from(tokenEvents)
      .where(eq(tokenEvents.userId, userId))
      .orderBy(tokenEvents.createdAt);
    expect(ledger.map((event) => [event.totalTokens, event.chargedTokens])).toEqual([
      [42, 42],
      [success, success],
    ]);
    expect(ledger[0]!.idempotencyKey).toBe(`${ledger[1]!.idempotencyKey}:request-1`);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(42 + success);
    expect(user!.tokensReserved).toBe(0);
  });

  it('retries a response without usage uncharged', async () => {
    groq.reset();
    const { userId, patchRequestId } = await newPatchRequest();
    groq.enqueue({ status: 200, body: { choices: 'unreadable' } }, { text: 'fixed\n' });

    await meter(groqClient(), { userId, patchRequestId, path: 'a.ts', attempt: 0 }).generate(request);

    const success = groq.requests[1]!.reply!.usage!.total_tokens;
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger.map((event) => event.chargedTokens)).toEqual([success]);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(success);
    expect(user!.tokensReserved).toBe(0);
  });

  it('charges an estimate without usage', async () => {
    groq.reset();
    const { userId, patchRequestId } = await newPatchRequest();
    const text = 'const apiKey = process.env.API_KEY;\n';
    groq.enqueue({
      status: 200,
      body: {
        id: 'chatcmpl-no-usage',
        object: 'chat.completion',
        created: 1,
        model: 'llama-3.3-70b-versatile',
        choices: [
          { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' },
        ],
      },
    });

    const result = await meterClient(groqClient(), {
      db: context.db,
      keySource: 'platform',
      generation: 0,
      reservationTtlSeconds: 600,
      userId,
      patchRequestId,
      path: 'a.ts',
      attempt: 0,
      logger: context.logger,
    }).generate(request);

    expect(result.text).toBe(text);
    const promptTokens = estimatePromptTokens(request);
    const completionTokens = estimateTextTokens(text);
    expect(completionTokens).toBeGreaterThan(0);
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger).toHaveLength(1);
    expect(ledger[0]!.promptTokens).toBe(promptTokens);
    expect(ledger[0]!.completionTokens).toBe(completionTokens);
    expect(ledger[0]!.totalTokens).toBe(promptTokens + completionTokens);
    expect(ledger[0]!.chargedTokens).toBe(promptTokens + completionTokens);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(promptTokens + completionTokens);
    expect(user!.tokensReserved).toBe(0);
    const warning = context.logs.find(
      (line) => line.event === 'model.usage_missing' && line.patchRequestId === patchRequestId,
    );
    expect(warning?.estimatedTokens).toBe(promptTokens + completionTokens);
    expect(warning?.provider).toBe('groq');
  });

  it('charges at least prompt plus completion', async () => {
    groq.reset();
    const { userId, patchRequestId } = await newPatchRequest();
    groq.enqueue({ text: 'fixed\n', usage: { prompt_tokens: 40, completion_tokens: 2, total_tokens: 1 } });

    await meter(groqClient(), { userId, patchRequestId, path: 'a.ts', attempt: 0 }).generate(request);

    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger.map((event) => [event.totalTokens, event.chargedTokens])).toEqual([[42, 42]]);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(42);
  });

  it('charges failed responses without usage', async () => {
    const promptTokens = estimatePromptTokens(request);
    const cases = [
      { finishReason: 'length', content: 'const a =', kind: 'truncated', completion: 100 },
      { finishReason: 'stop', content: '  ', kind: 'empty', completion: 0 },
    ];
    for (const { finishReason, content, kind, completion } of cases) {
      groq.reset();
      const { userId, patchRequestId } = await newPatchRequest();
      groq.enqueue({
        status: 200,
        body: {
          id: `chatcmpl-${kind}`,
          object: 'chat.completion',
          created: 1,
          model: 'llama-3.3-70b-versatile',
          choices: [
            { index: 0, message: { role: 'assistant', content }, finish_reason: finishReason },
          ],
        },
      });

      const error = await meter(groqClient(), { userId, patchRequestId, path: 'a.ts', attempt: 0 })
        .generate(request)
        .catch((caught: unknown) => caught);

      expect((error as ProviderError).kind, kind).toBe(kind);
      const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
      expect(ledger.map((event) => [event.promptTokens, event.completionTokens]), kind).toEqual([
        [promptTokens, completion],
      ]);
      expect(ledger[0]!.chargedTokens, kind).toBe(promptTokens + completion);
      const [user] = await context.db.select().from(users).where(eq(users.id, userId));
      expect(user!.tokensUsed, kind).toBe(promptTokens + completion);
      expect(user!.tokensReserved, kind).toBe(0);
    }
  });

  it('retries a settle while unreachable', async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    const database = await cuttableDatabase();
    try {
      const client = clientThatCuts(120, async () => {
        await database.cut();
        setTimeout(() => void database.restore(), 1_500);
      });
      await meter(client, {
        userId,
        patchRequestId,
        path: 'a.ts',
        attempt: 0,
        db: database.db,
        settleRetryUntil: Date.now() + 30_000,
        logger: context.logger,
      }).generate(request);
    } finally {
      await database.close();
    }

    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger.map((event) => event.chargedTokens)).toEqual([120]);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(120);
    expect(user!.tokensReserved).toBe(0);
    const retrying = logsOf(context, 'usage.settle_retrying', { patchRequestId });
    expect(retrying).toHaveLength(1);
    expect(retrying[0]!.idempotencyKey).toBe(ledger[0]!.idempotencyKey);
    expect(logsOf(context, 'usage.settle_failed', { patchRequestId })).toEqual([]);
  });

  it('logs a settle that cannot be written', async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    const database = await cuttableDatabase();
    let error: unknown;
    try {
      const client = clientThatCuts(120, () => database.cut());
      // One retry after 1 s fits before the limit, and the next one, 2 s later, does not.
      error = await meter(client, {
        userId,
        patchRequestId,
        path: 'a.ts',
        attempt: 0,
        db: database.db,
        settleRetryUntil: Date.now() + 1_500,
        logger: context.logger,
      })
        .generate(request)
        .catch((caught: unknown) => caught);
    } finally {
      await database.close();
    }

    expect(error).toBeInstanceOf(Error);
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger).toEqual([]);
    const failed = logsOf(context, 'usage.settle_failed', { patchRequestId });
    expect(failed).toHaveLength(1);
    expect(failed[0]!.level).toBe(50);
    const keyPattern = new RegExp(`^${patchRequestId}:[0-9a-f]{64}:generation-0:attempt-0:groq$`);
    expect(failed[0]!.idempotencyKey).toMatch(keyPattern);
    expect(failed[0]!.provider).toBe('groq');
    expect(failed[0]!.userId).toBe(userId);
    expect(failed[0]!.promptTokens).toBe(110);
    expect(failed[0]!.completionTokens).toBe(10);
    expect(failed[0]!.totalTokens).toBe(120);
    expect(logsOf(context, 'usage.settle_retrying', { patchRequestId })).toHaveLength(1);
  });

  it('releases the hold of a failed settle', async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    // A statement that fails inside the settle's transaction, as a bug or a constraint would.
    await context.db.execute(sql.raw(`
      CREATE FUNCTION reject_settle() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'settles of this path are rejected'; END $$;
      CREATE TRIGGER reject_settle BEFORE INSERT ON token_events
        FOR EACH ROW WHEN (NEW.path = 'reject-settle.ts') EXECUTE FUNCTION reject_settle();
    `));
    let error: unknown;
    try {
      error = await meter(fixedUsageClient(120), {
        userId,
        patchRequestId,
        path: 'reject-settle.ts',
        attempt: 0,
        logger: context.logger,
      })
        .generate(request)
        .catch((caught: unknown) => caught);
    } finally {
      await context.db.execute(sql.raw('DROP TRIGGER reject_settle ON token_events'));
      await context.db.execute(sql.raw('DROP FUNCTION reject_settle()'));
    }

    expect((error as Error).message).toContain('settles of this path are rejected');
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger).toEqual([]);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(0);
    expect(user!.tokensReserved).toBe(0);
    const reservations = await context.db.execute(
      sql`SELECT id FROM token_reservations WHERE user_id = ${userId}`,
    );
    expect(reservations).toHaveLength(0);
    const failed = logsOf(context, 'usage.settle_failed', { patchRequestId });
    expect(failed).toHaveLength(1);
    expect(failed[0]!.totalTokens).toBe(120);
    expect(logsOf(context, 'usage.release_failed', { patchRequestId })).toEqual([]);
  });

  it('stops when the retry does not fit', async () => {
    groq.reset();
    // The hold of 137 tokens fits once, but not again after the 42 charged.
    const { userId, patchRequestId } = await newPatchRequest(160);
    groq.enqueue(unreadableBilled, { text: 'fixed\n' });

    const error = await meter(groqClient(), { userId, patchRequestId, path: 'a.ts', attempt: 0 })
      .generate(request)
      .catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(AllowanceExceededError);
    // 20 bytes of prompt make 5 tokens, plus 32 for the chat template.
    expect((error as Error).message).toContain(
      'so 118 remain but the model call for a.ts reserves 137 tokens (prompt estimate 37 plus ' +
        'output cap 100). Wait for the next period',
    );
    expect(groq.requests).toHaveLength(1);
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger.map((event) => event.chargedTokens)).toEqual([42]);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(42);
    expect(user!.tokensReserved).toBe(0);
  });

  it('sends the output cap that the reservation granted', async () => {
    groq.reset();
    // The full hold of 137 tokens (prompt estimate 37 plus output cap 100) fitted when the
    // caller sized the cap, but another call has reserved 57 of the 137 since.
    const { userId, patchRequestId } = await newPatchRequest(137);
    await holdOtherCall(userId, 57);
    const options = { userId, patchRequestId, path: 'a.ts', attempt: 0, minimumOutputTokens: 40 };

    const result = await generateWithGroq(options);

    expect(result.text.length).toBeGreaterThan(0);
    expect(groq.requests).toHaveLength(1);
    expect(maxCompletionTokens(0)).toBe(80 - 37);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensReserved).toBe(57);
    expect(user!.tokensUsed + user!.tokensReserved).toBeLessThanOrEqual(137);
  });

  it('sends the full output cap when unlimited', async () => {
    groq.reset();
    const { userId, patchRequestId } = await newPatchRequest(-1);
    const options = { userId, patchRequestId, path: 'a.ts', attempt: 0, minimumOutputTokens: 40 };

    await generateWithGroq(options);

    expect(maxCompletionTokens(0)).toBe(100);
  });

  it('keeps the granted output cap for a billed retry', async () => {
    groq.reset();
    // 100 tokens are left, so the call is granted an output cap of 63. After the 42 charged
    // for the unreadable response, the retry's hold of the same 100 tokens does not fit.
    const { userId, patchRequestId } = await newPatchRequest(180);
    await holdOtherCall(userId, 80);
    groq.enqueue(unreadableBilled, { text: 'fixed\n' });
    const options = { userId, patchRequestId, path: 'a.ts', attempt: 0, minimumOutputTokens: 40 };

    const error = await generateWithGroq(options).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(AllowanceExceededError);
    expect((error as Error).message).toContain(
      'so 58 remain but the model call for a.ts reserves 100 tokens (prompt estimate 37 plus ' +
        'output cap 63). Wait for the next period',
    );
    expect(groq.requests).toHaveLength(1);
    expect(maxCompletionTokens(0)).toBe(63);
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(42);
    expect(user!.tokensReserved).toBe(80);
  });

  it('names the minimum reservation that does not fit', async () => {
    groq.reset();
    const { userId, patchRequestId } = await newPatchRequest(70);
    const options = { userId, patchRequestId, path: 'a.ts', attempt: 0, minimumOutputTokens: 40 };

    const error = await generateWithGroq(options).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(AllowanceExceededError);
    expect((error as Error).message).toContain(
      'so 70 remain but the model call for a.ts needs a minimum reservation of about 77 tokens, ' +
        'its prompt estimate plus the least output cap that can hold the file.',
    );
    expect(groq.requests).toHaveLength(0);
  });
});

describe('meterClient when checking counts fails', () => {
  /** The call's hold: 20 bytes of prompt make 5 tokens, plus 32 for the chat template, plus the cap. */
  const hold = estimatePromptTokens(request) + request.maxOutputTokens;
  const counts = { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 };

  beforeEach(() => {
    groq.reset();
    billing.fail = true;
  });
  afterEach(() => {
    billing.fail = false;
  });

  function meteredGroq(ids: { userId: string; patchRequestId: string }) {
    return meter(groqClient(), { ...ids, path: 'a.ts', attempt: 0, logger: context.logger });
  }

  async function ledgerAndCounters(userId: string) {
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    return { ledger, user: user! };
  }

  it('settles the hold of a used response', async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    groq.enqueue({ text: 'fixed\n', usage: counts });

    const result = await meteredGroq({ userId, patchRequestId }).generate(request);

    expect(result.text).toBe('fixed\n');
    expect(groq.requests).toHaveLength(1);
    const { ledger, user } = await ledgerAndCounters(userId);
    expect(ledger).toHaveLength(1);
    expect(ledger[0]!.promptTokens).toBe(estimatePromptTokens(request));
    expect(ledger[0]!.completionTokens).toBe(request.maxOutputTokens);
    expect(ledger[0]!.totalTokens).toBe(hold);
    expect(ledger[0]!.chargedTokens).toBe(hold);
    expect(ledger[0]!.reportedPromptTokens).toBe(12);
    expect(ledger[0]!.reportedCompletionTokens).toBe(3);
    expect(ledger[0]!.reportedTotalTokens).toBe(15);
    expect(user.tokensUsed).toBe(hold);
    expect(user.tokensReserved).toBe(0);

    const logged = logsOf(context, 'model.usage_check_failed', { patchRequestId });
    expect(logged).toHaveLength(1);
    expect(logged[0]!.level).toBe(50);
    expect(logged[0]!.reportedTotalTokens).toBe(15);
    expect(logged[0]!.settledTokens).toBe(hold);
    expect((logged[0]!.err as { message: string }).message).toBe('Maximum call stack size exceeded');
  });

  it('settles the hold of a cut-off response', async () => {
    const { userId, patchRequestId } = await newPatchRequest();
    groq.enqueue({
      text: 'const a =',
      finishReason: 'length',
      usage: { prompt_tokens: 12, completion_tokens: 100, total_tokens: 112 },
    });

    const error = await meteredGroq({ userId, patchRequestId })
      .generate(request)
      .catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).kind).toBe('truncated');
    expect(groq.requests).toHaveLength(1);
    const { ledger, user } = await ledgerAndCounters(userId);
    expect(ledger.map((event) => [event.chargedTokens, event.reportedTotalTokens])).toEqual([[hold, 112]]);
    expect(user.tokensUsed).toBe(hold);
    expect(user.tokensReserved).toBe(0);
    expect(logsOf(context, 'model.usage_check_failed', { patchRequestId })).toHaveLength(1);
  });

  it('charges the counts when the check works', async () => {
    billing.fail = false;
    const { userId, patchRequestId } = await newPatchRequest();
    groq.enqueue({ text: 'fixed\n', usage: counts });

    await meteredGroq({ userId, patchRequestId }).generate(request);

    const { ledger, user } = await ledgerAndCounters(userId);
    expect(ledger.map((event) => [event.chargedTokens, event.reportedTotalTokens])).toEqual([[15, null]]);
    expect(user.tokensUsed).toBe(15);
    expect(user.tokensReserved).toBe(0);
    expect(logsOf(context, 'model.usage_check_failed', { patchRequestId })).toEqual([]);
  });
});
