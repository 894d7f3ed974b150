import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownKeyClient, StoredKeyChangedError } from '../../src/autofix/own-key-client.ts';
import { userApiKeys } from '../../src/db/schema/index.ts';
import { groqErrorBody, startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { encryptUserKey } from '../../src/keys/encryption.ts';
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

/**
 * Wraps clients of the fake Groq that retry `maxRetries` times, 10 ms apart, for the stored key
 * `stored`, whose plain value is `key`.
 */
function ownGroqClient(stored: StoredKeyRef, maxRetries: number, key = apiKey) {
  const createClient = (clientKey: string) =>
    createGroqClient({
      apiKey: clientKey,
      baseUrl: groq.url,
      model: 'llama-3.3-70b-versatile',
      maxRetries,
      timeoutMs: 5000,
      retryBaseDelayMs: 10,
    });
  return ownKeyClient(context, { key, stored }, createClient, { platformKeyConfigured: false });
}

/** Stores `key` encrypted as the user's Groq key, replacing the stored one, as a save does. */
async function saveEncrypted(userId: string, key: string): Promise<StoredKeyRef> {
  const encrypted = await encryptUserKey(context.keyring, { userId, provider: 'groq' }, key);
  const values = { ...encrypted, lastFour: key.slice(-4) };
  await context.db
    .insert(userApiKeys)
    .values({ userId, provider: 'groq', ...values })
    .onConflictDoUpdate({ target: [userApiKeys.userId, userApiKeys.provider], set: values });
  return { userId, provider: 'groq', nonce: encrypted.nonce };
}

async function storedRow(userId: string) {
  const [row] = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));
  return row;
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

  it('marks a key used after an answered failure', async () => {
    groq.reset();
    const stored = await storedKey();
    groq.enqueue({ status: 500, body: groqErrorBody('internal error', 'internal_server_error') });
    const client = ownGroqClient(stored, 0);

    await expect(client.generate(request)).rejects.toBeInstanceOf(ProviderError);
    expect(await lastUsedAt(stored.userId)).toBeInstanceOf(Date);
  });

  it('marks a rejected key used and unusable', async () => {
    groq.reset();
    const stored = await storedKey();
    groq.rejectKey(apiKey);
    const client = ownGroqClient(stored, 0);

    const error = await client.generate(request).then(() => null, (caught: unknown) => caught);

    expect((error as ProviderError).kind).toBe('unauthorized');
    const row = await storedRow(stored.userId);
    expect(row!.lastUsedAt).toBeInstanceOf(Date);
    expect(row!.unusableCause).toBe('rejected');
  });

  it('leaves a key unused when nothing answered', async () => {
    const stored = await storedKey();
    // A server that closes every connection at once, so no HTTP response arrives.
    const closing = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closing.listen(0, '127.0.0.1', resolve));
    const { port } = closing.address() as net.AddressInfo;
    const unreachable = createGroqClient({
      apiKey,
      baseUrl: `http://127.0.0.1:${port}`,
      model: 'llama-3.3-70b-versatile',
      maxRetries: 0,
      timeoutMs: 5000,
      retryBaseDelayMs: 10,
    });
    const client = ownKeyClient(context, { key: apiKey, stored }, () => unreachable, {
      platformKeyConfigured: false,
    });

    const error = await client.generate(request).then(() => null, (caught: unknown) => caught);
    closing.close();

    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).status).toBeUndefined();
    expect(await lastUsedAt(stored.userId)).toBeNull();
  });

  it('calls with the key as stored at each call', async () => {
    groq.reset();
    const { userId } = await storedKey();
    const firstKey = 'gsk_TESTONLYfirst00000000000000000000000000000000000000000';
    const secondKey = 'gsk_TESTONLYsecond0000000000000000000000000000000000000000';
    const first = await saveEncrypted(userId, firstKey);
    const client = ownGroqClient(first, 0, firstKey);

    await client.generate(request);
    const second = await saveEncrypted(userId, secondKey);
    await client.generate(request);
    await client.generate(request);

    expect(groq.requests.map((sent) => sent.headers.authorization)).toEqual([
      `Bearer ${firstKey}`,
      `Bearer ${secondKey}`,
      `Bearer ${secondKey}`,
    ]);
    const row = await storedRow(userId);
    expect(row!.nonce).toBe(second.nonce);
    expect(row!.lastUsedAt).toBeInstanceOf(Date);
    const reloaded = context.logs.filter(
      (line) => line.event === 'user_key.reloaded' && line.userId === userId,
    );
    expect(reloaded).toHaveLength(1);
  });

  it('makes no call once the key is deleted', async () => {
    groq.reset();
    const { userId } = await storedKey();
    const key = 'gsk_TESTONLYdeleted000000000000000000000000000000000000000';
    const stored = await saveEncrypted(userId, key);
    const client = ownGroqClient(stored, 0, key);
    await client.generate(request);
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, userId));

    const error = await client.generate(request).then(() => null, (caught: unknown) => caught);

    expect(error).toBeInstanceOf(StoredKeyChangedError);
    expect((error as StoredKeyChangedError).change).toBe('deleted');
    expect((error as StoredKeyChangedError).kind).toBe('unauthorized');
    expect((error as StoredKeyChangedError).message).toBe(
      'Your saved Groq key was deleted while this preview ran, so this file was not sent with ' +
        'it, and the platform key was not used instead. Regenerate the file to preview it with ' +
        'the keys you have now.',
    );
    expect(groq.requests.map((sent) => sent.apiKey)).toEqual([key]);
    const logged = context.logs.find(
      (line) => line.event === 'user_key.deleted_during_preview' && line.userId === userId,
    );
    expect(logged?.provider).toBe('groq');
  });

  it('makes no call once another preview had the key rejected', async () => {
    groq.reset();
    const { userId } = await storedKey();
    const key = 'gsk_TESTONLYrevoked0000000000000000000000000000000000000000';
    const stored = await saveEncrypted(userId, key);
    const first = ownGroqClient(stored, 0, key);
    const second = ownGroqClient(stored, 0, key);
    groq.enqueue({ status: 401, body: groqErrorBody('Invalid API Key', 'invalid_api_key') });
    await expect(first.generate(request)).rejects.toBeInstanceOf(ProviderError);

    const error = await second.generate(request).then(() => null, (caught: unknown) => caught);

    expect(error).toBeInstanceOf(StoredKeyChangedError);
    expect((error as StoredKeyChangedError).change).toBe('rejected');
    expect((error as StoredKeyChangedError).kind).toBe('unauthorized');
    expect((error as StoredKeyChangedError).message).toBe((await storedRow(userId))!.unusableReason);
    expect(groq.requests.map((sent) => sent.apiKey)).toEqual([key]);
  });

  it('rejects a replacement that does not decrypt', async () => {
    groq.reset();
    const { userId } = await storedKey();
    const key = 'gsk_TESTONLYundecryptable0000000000000000000000000000000000';
    const stored = await saveEncrypted(userId, key);
    const client = ownGroqClient(stored, 0, key);
    await saveEncrypted(userId, 'gsk_TESTONLYreplacement000000000000000000000000000000000');
    const replaced = await storedRow(userId);
    const bytes = Buffer.from(replaced!.ciphertext, 'base64url');
    bytes[0]! ^= 0xff;
    await context.db
      .update(userApiKeys)
      .set({ ciphertext: bytes.toString('base64url') })
      .where(eq(userApiKeys.id, replaced!.id));

    const error = await client.generate(request).then(() => null, (caught: unknown) => caught);

    expect(error).toBeInstanceOf(StoredKeyChangedError);
    expect((error as StoredKeyChangedError).change).toBe('unusable');
    expect((error as StoredKeyChangedError).message).toContain('Your saved Groq key could not be decrypted');
    expect(groq.requests).toHaveLength(0);
    expect((await storedRow(userId))!.unusableCause).toBe('undecryptable');
  });
});
