import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownKeyClient } from '../../src/autofix/own-key-client.ts';
import { userApiKeys } from '../../src/db/schema/index.ts';
import { groqErrorBody, startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import type { StoredKeyRef } from '../../src/keys/own-keys.ts';
import { ProviderError } from '../../src/llm/errors.ts';
import { createGroqClient } from '../../src/llm/groq.ts';
import type { BilledRetry } from '../../src/llm/types.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser } from '../helpers/web.ts';

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

const apiKey = 'gsk_TESTONLY0000000000000000000000000000000000000000000000';

/** Stores a key row for a new user. The client reads only its ids, to mark it. */
async function storedKey() {
  const user = await createSignedInUser(context.db, {
    login: `own-key-${randomBytes(4).toString('hex')}`,
  });
  const nonce = randomBytes(24).toString('base64url');
  await context.db.insert(userApiKeys).values({
    userId: user.userId,
    provider: 'groq',
    ciphertext: randomBytes(48).toString('base64url'),
    nonce,
    masterKeyVersion: 1,
    lastFour: apiKey.slice(-4),
  });
  return { userId: user.userId, provider: 'groq' as const, nonce };
}

async function lastUsedAt(userId: string): Promise<Date | null> {
  const [row] = await context.db
    .select({ lastUsedAt: userApiKeys.lastUsedAt })
    .from(userApiKeys)
    .where(eq(userApiKeys.userId, userId));
  return row!.lastUsedAt;
}

/** Wraps a client of the fake Groq that retries `maxRetries` times, 10 ms apart. */
function ownGroqClient(stored: StoredKeyRef, maxRetries: number) {
  const client = createGroqClient({
    apiKey,
    baseUrl: groq.url,
    model: 'llama-3.3-70b-versatile',
    maxRetries,
    timeoutMs: 5000,
    retryBaseDelayMs: 10,
  });
  return ownKeyClient(client, { db: context.db, logger: context.logger, stored, apiKey });
}

const request = { system: 'Return the file.', user: 'data', maxOutputTokens: 100 };

describe('ownKeyClient', () => {
  it('marks a key used after a billed retry', async () => {
    groq.reset();
    const stored = await storedKey();
    groq.enqueue(
      {
        status: 200,
        body: { choices: 'unreadable', usage: { prompt_tokens: 40, completion_tokens: 2, total_tokens: 42 } },
      },
      { status: 500, body: groqErrorBody('internal error', 'internal_server_error') },
    );
    const retries: BilledRetry[] = [];
    const client = ownGroqClient(stored, 1);

    const error = await client
      .generate(request, { onBilledRetry: async (retry) => void retries.push(retry) })
      .then(() => null, (caught: unknown) => caught);

    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).status).toBe(500);
    expect(groq.requests).toHaveLength(2);
    expect(retries.map((retry) => [retry.request, retry.usage.totalTokens])).toEqual([[1, 42]]);
    expect(await lastUsedAt(stored.userId)).toBeInstanceOf(Date);
  });

  it('leaves an unbilled key unused', async () => {
    groq.reset();
    const stored = await storedKey();
    groq.enqueue({ status: 500, body: groqErrorBody('internal error', 'internal_server_error') });
    const client = ownGroqClient(stored, 0);

    await expect(client.generate(request)).rejects.toBeInstanceOf(ProviderError);
    expect(await lastUsedAt(stored.userId)).toBeNull();
  });
});
