import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meterClient } from '../../src/autofix/metered-client.ts';
import { patchRequests, tokenEvents, users } from '../../src/db/schema/index.ts';
import type { ModelClient } from '../../src/llm/types.ts';
import { releaseAttemptReservations } from '../../src/usage/allowance.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createRunWithFindings, createSignedInUser } from '../helpers/web.ts';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext();
});
afterAll(async () => {
  await context.close();
});

/** A client that returns `totalTokens` of usage for every call, without any network. */
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

async function newPatchRequest() {
  const user = await createSignedInUser(context.db, {
    login: `meter-${randomBytes(4).toString('hex')}`,
    plan: 'pro',
    tokenLimit: 100_000,
  });
  const { run } = await createRunWithFindings(context.db, { userId: user.userId, findings: [] });
  const [request] = await context.db
    .insert(patchRequests)
    .values({ runId: run.id, userId: user.userId })
    .returning({ id: patchRequests.id });
  return { userId: user.userId, patchRequestId: request!.id };
}

function meter(client: ModelClient, input: { userId: string; patchRequestId: string; path: string; attempt: number }) {
  return meterClient(client, {
    db: context.db,
    keySource: 'platform',
    generation: 0,
    reservationTtlSeconds: 600,
    ...input,
  });
}

const request = { system: 'Return the file.', user: 'data', maxOutputTokens: 100 };

describe('meterClient', () => {
  it('charges a call for a very long path', async () => {
    // Git allows paths longer than PostgreSQL's btree index entries (about 2,700 bytes), and
    // random text is not compressed below that.
    const path = Array.from({ length: 12 }, () => randomBytes(120).toString('hex')).join('/');
    const { userId, patchRequestId } = await newPatchRequest();

    await meter(fixedUsageClient(500), { userId, patchRequestId, path, attempt: 0 }).generate(request);

    const [user] = await context.db.select().from(users).where(eq(users.id, userId));
    expect(user!.tokensUsed).toBe(500);
    expect(user!.tokensReserved).toBe(0);
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
    expect(ledger.map((event) => [event.path, event.chargedTokens])).toEqual([[path, 500]]);
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
});
